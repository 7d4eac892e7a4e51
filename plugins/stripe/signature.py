"""Stripe's webhook signature scheme, shared by the connector (to verify) and the sandbox (to sign).

Stripe signs every delivery with the endpoint's secret (``whsec_...``) and sends the result in one
header::

    Stripe-Signature: t=1700000000,v1=5257a869e7ec...,v0=6ffbb59b2300...

``t`` is the time of *this delivery attempt* in Unix seconds, and each ``v1`` is the hex
HMAC-SHA256 of ``f"{t}.{raw body}"`` keyed by the whole secret string, prefix included. While an
endpoint's secret is being rolled Stripe signs with both secrets, so the header holds several
``v1`` values and any one may match. ``v0`` is a legacy test-mode scheme and is ignored.

Binding the timestamp into the signed payload is what makes replay protection work: an attacker
who captured a delivery cannot move ``t`` forward without breaking the signature, so rejecting
old timestamps rejects old captures.
"""

import hashlib
import hmac
from collections.abc import Iterable

from crossledger.plugins.errors import SignatureError

SCHEME = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` signature of ``body`` sent at ``timestamp``: hex HMAC-SHA256 keyed by ``secret``."""
    signed_payload = f"{timestamp}.{body.decode('utf-8')}"
    return hmac.new(secret.encode("utf-8"), signed_payload.encode("utf-8"), hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Stripe-Signature`` header value Stripe would send for ``body`` at ``timestamp``."""
    return f"t={timestamp},{SCHEME}={sign(secret, timestamp, body)}"


def verify(header: str, body: bytes, secrets: Iterable[str], *, now: float, tolerance: int) -> None:
    """Raise :class:`SignatureError` unless one ``v1`` in ``header`` signs ``body`` with one of ``secrets``.

    ``secrets`` holds the current secret and, during a roll, the previous one. The signature is
    checked before the age, so a stale delivery with a good signature is reported as stale (the
    actionable fact: check the clock or the queue delay), and a forged one as forged. Timestamps in
    the future are accepted, as Stripe's own libraries do, to tolerate clock skew.
    """
    timestamp, signatures = _parse(header)
    try:
        candidates = [sign(secret, timestamp, body) for secret in secrets if secret]
    except UnicodeDecodeError as error:
        raise SignatureError("body is not UTF-8, so it cannot be what Stripe signed") from error
    if not candidates:
        raise SignatureError("no webhook secret configured")
    # Bytes, not str: compare_digest refuses non-ASCII strings, and the header is the caller's text.
    if not any(hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))
               for expected in candidates for given in signatures):
        raise SignatureError("no signature matches")
    if timestamp < now - tolerance:
        raise SignatureError(f"timestamp outside tolerance: t={timestamp} is more than {tolerance}s old")


def _parse(header: str) -> tuple[int, list[str]]:
    """Split ``t=...,v1=...,v1=...`` into the timestamp and the ``v1`` signatures."""
    items = [item.split("=", 1) for item in header.split(",")]
    pairs = [(item[0].strip(), item[1].strip()) for item in items if len(item) == 2]
    timestamps = [value for name, value in pairs if name == "t"]
    if len(timestamps) != 1 or not (timestamps[0].isascii() and timestamps[0].isdigit()):
        raise SignatureError("Stripe-Signature header has no valid timestamp t=<unix seconds>")
    signatures = [value for name, value in pairs if name == SCHEME]
    if not signatures:
        raise SignatureError(f"no {SCHEME} signature in the Stripe-Signature header")
    return int(timestamps[0]), signatures
