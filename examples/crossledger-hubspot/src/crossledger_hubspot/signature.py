"""HubSpot's v3 request signature, shared by the connector (to verify) and the sandbox (to sign).

HubSpot signs every webhook request with the app's client secret and sends two headers::

    X-HubSpot-Request-Timestamp: 1708986599647                  (Unix time in milliseconds)
    X-HubSpot-Signature-v3: base64(HMAC-SHA256(secret, method + uri + body + timestamp))

``uri`` is the full URL HubSpot posted to (scheme, host, path and query), the target URL configured
in the app. A receiver behind a proxy does not see that URL in the request it gets, so the hub is
told it in its settings (``webhook_url``) and signs against it. Requests whose timestamp is older
than five minutes must be rejected: binding the timestamp into the signature is what makes a
captured request useless later.
"""

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from crossledger.plugins.errors import SignatureError

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
MAX_AGE_S = 300


def sign(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> str:
    """The v3 signature of one request: HubSpot hashes the UTF-8 string ``method + uri + body +
    timestamp``, which is these bytes with the raw body in the middle."""
    source = f"{method}{uri}".encode() + body + str(timestamp_ms).encode()
    digest = hmac.new(secret.encode("utf-8"), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_headers(secret: str, uri: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    """The headers HubSpot sends with a webhook POST of ``body`` to ``uri`` at ``timestamp_ms``."""
    return {SIGNATURE_HEADER: sign(secret, "POST", uri, body, timestamp_ms), TIMESTAMP_HEADER: str(timestamp_ms)}


def verify(headers: Mapping[str, str], uri: str, body: bytes, secrets: Iterable[str], *, now: float,
           max_age_s: float = MAX_AGE_S) -> None:
    """Raise :class:`SignatureError` unless a POST of ``body`` to ``uri`` was signed with one of
    ``secrets`` (the current client secret and, during a rotation, the previous one) less than
    ``max_age_s`` before ``now`` (Unix seconds).

    The signature is checked before the age, so a forged request is reported as forged and a late
    genuine one as late (check the clocks or the queue).
    """
    given = _header(headers, SIGNATURE_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    if not (stamp.isascii() and stamp.isdigit()):  # isdigit alone passes "²", which int() refuses
        raise SignatureError(f"{TIMESTAMP_HEADER} must be Unix milliseconds, got {stamp!r}")
    expected = [sign(secret, "POST", uri, body, int(stamp)) for secret in secrets if secret]
    if not expected:
        raise SignatureError("no client secret configured")
    if not any(hmac.compare_digest(candidate.encode(), given.encode("utf-8", "replace")) for candidate in expected):
        raise SignatureError("no signature matches")
    age = now - int(stamp) / 1000
    if age > max_age_s:
        raise SignatureError(f"request timestamp is {age:.0f}s old, more than {max_age_s:.0f}s")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = next((value for key, value in headers.items() if key.lower() == name.lower()), None)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value
