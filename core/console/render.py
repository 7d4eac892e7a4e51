"""How the console's pages are rendered: the Jinja2 templates (``templates/``, shipped with the
package), and the filters that make values read as people read them.

Money is ``2,807.00 USD`` (:func:`~crossledger.canonical.money.format_money`), a time is its UTC
minute with how long ago it was (``2026-12-07 16:51 UTC · 3 min ago``), and for a viewer a person's
name or email shows masked (``A*** L**``, ``a***@example.com``): :func:`masked` applies wherever
such values reach a page, and the filter ``unpersonal`` to text that quotes them (a finding's
detail). Autoescaping is on: nothing from a system reaches the page as markup.
"""

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from crossledger.canonical.money import Money, format_money
from crossledger.core.console.sessions import Session
from jinja2 import pass_context
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

TEMPLATES = Path(__file__).parent / "templates"
PERSONAL = frozenset({"name", "email", "phone", "companyName", "firstName", "lastName", "contact", "address",
                      "requester", "fullName", "full_name"})
"""Fields that hold a person's (or a company contact's) name, email or address: masked for viewers."""

templates = Jinja2Templates(directory=str(TEMPLATES))


def money(value: Any) -> str:
    """A :class:`Money` (or its JSON form ``{"amount", "currency"}``) as ``2,807.00 USD``; anything else as is."""
    if isinstance(value, dict) and set(value) == {"amount", "currency"}:
        value = msgspec.convert(value, Money)
    return format_money(value) if isinstance(value, Money) else "" if value is None else str(value)


def ago(seconds: float) -> str:
    """A duration as people say it: ``40 s``, ``3 min``, ``5 h``, ``2 d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def when(ts: float | None, now: float | None = None) -> str:
    """``2026-12-07 16:51 UTC · 3 min ago``; empty for no time."""
    if ts is None:
        return ""
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{stamp} · {ago((now or time.time()) - ts)} ago"


def mask_text(text: str) -> str:
    """``Acme Ltd`` → ``A*** L**``; ``ann@acme.example`` → ``a***@acme.example``."""
    if "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}***@{domain}"
    return " ".join(word[:1] + "*" * min(3, len(word) - 1) for word in text.split(" "))


def masked(value: Any, session: Session | None) -> Any:
    """``value`` with every personal field masked unless ``session`` is an operator's."""
    if session is not None and session.operator:
        return value
    if isinstance(value, dict):
        return {key: mask_text(item) if key in PERSONAL and isinstance(item, str) else masked(item, session)
                for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item, session) for item in value]
    return value


def _personal_values(value: Any) -> set[str]:
    """Every string held under a :data:`PERSONAL` key, at any depth."""
    if isinstance(value, dict):
        return {item for key, item in value.items() if key in PERSONAL and isinstance(item, str)} | {
            found for item in value.values() for found in _personal_values(item)}
    if isinstance(value, list):
        return {found for item in value for found in _personal_values(item)}
    return set()


@pass_context
def unpersonal(context: Any, text: str, records: Any) -> str:
    """``text`` (a finding's detail, say) with the personal values of ``records`` masked in it,
    unless the page is an operator's."""
    session = context.get("session")
    if isinstance(session, Session) and session.operator:
        return text
    return masked_in(text, records)


def masked_in(text: str, records: Any) -> str:
    """``text`` with every personal value of ``records`` (at any depth) masked where it quotes one."""
    for value in sorted(_personal_values(records), key=len, reverse=True):
        text = text.replace(value, mask_text(value))
    return text


templates.env.filters.update(money=money, when=when, ago=ago, unpersonal=unpersonal)


def page(request: Request, name: str, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``templates/<name>`` with the session (for the menu, the CSRF token and what to show)."""
    response: HTMLResponse = templates.TemplateResponse(
        request, name, {"session": session, "now": time.time(), **context}, status_code=status)
    return response
