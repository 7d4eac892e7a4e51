"""How a Zuora callout proves it is Zuora's, shared by the connector (to verify) and the sandbox (to sign).

A callout is the HTTP request a Zuora *notification definition* makes when its event happens. Zuora
has no fixed signature header: each definition authenticates its callouts in one of the ways the
tenant configures, and crossledger verifies the two that prove something to the receiver:

- **HTTP Basic** (``requiredAuth`` with ``calloutAuth.username``/``password`` on the definition):
  ``Authorization: Basic base64(username:password)``. It proves the sender knows the password, not
  that the body is what Zuora sent.
- **HMAC** (a callout template's HMAC settings: algorithm, key, the data to sign, and the header the
  signature goes in): crossledger's template signs the raw body with HMAC-SHA256 and puts the hex
  digest in the header the settings name (``Callout-Signature`` by default). It proves the body.

Zuora's third option, an OAuth 2.0 provider (Zuora fetches a token from the receiver's
authorization server and sends it as a Bearer token), needs an authorization server on the hub's
side and is not supported: a callout carrying only a Bearer token is refused.

Neither scheme signs a time, so a captured callout could be sent again; that is harmless here,
because a callout only names an object and the connector reads the object's current state from
Zuora (a replay of an old callout can only make the hub read today's record again, and the hub
drops an event id it has seen).
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from crossledger.plugins.errors import SignatureError


def sign(key: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` keyed by ``key``: the value of the signature header."""
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def basic_header(username: str, password: str) -> str:
    """The ``Authorization`` value of HTTP Basic with these credentials."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def verify_hmac(headers: Mapping[str, str], body: bytes, header_name: str, keys: Iterable[str]) -> None:
    """Raise :class:`SignatureError` unless ``header_name`` holds the HMAC of ``body`` with one of ``keys``."""
    given = header(headers, header_name)
    if not given:
        raise SignatureError(f"missing {header_name} header")
    expected = [sign(key, body) for key in keys if key]
    if not expected:
        raise SignatureError("no callout HMAC key configured")
    # Bytes, not str: compare_digest refuses non-ASCII strings, and the header is the caller's text.
    if not any(hmac.compare_digest(candidate.encode(), given.strip().lower().encode("utf-8", "replace"))
               for candidate in expected):
        raise SignatureError(f"{header_name} does not match the body")


def verify_basic(headers: Mapping[str, str], username: str, password: str) -> None:
    """Raise :class:`SignatureError` unless ``Authorization`` is HTTP Basic with these credentials."""
    given = header(headers, "authorization")
    if not given or not given.lower().startswith("basic "):
        raise SignatureError("missing HTTP Basic credentials")
    try:
        decoded = base64.b64decode(given[6:].strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise SignatureError("HTTP Basic credentials are not base64") from error
    expected = f"{username}:{password}".encode()
    if not hmac.compare_digest(decoded, expected):
        raise SignatureError("HTTP Basic credentials do not match")
