"""How Change Data Capture events reach the hub, and how the hub knows they are genuine.

Salesforce does not push CDC events over HTTP: a subscriber holds a Pub/Sub API (gRPC) or CometD
connection to the org and receives them there. The hub is reached through a small *relay* that
subscribes on its behalf and POSTs each event, in the CometD JSON envelope Salesforce documents
(``{"data": {"schema", "payload": {"ChangeEventHeader": ...}, "event": {"replayId"}}, "channel"}``),
to ``POST /webhooks/salesforce``.

Since those requests do not come from Salesforce, nothing Salesforce signs can vouch for them. The
relay signs each request with a secret it shares with the hub (``cdc_secret``)::

    X-Crossledger-Signature: t=1700000000,v1=<hex HMAC-SHA256(cdc_secret, b"1700000000." + raw body)>

``t`` is the Unix time of the attempt. Binding it into the MAC makes a captured request useless
after :data:`TOLERANCE_S`; the hub also refuses timestamps that far in the future (a relay with a
broken clock is a fault to fix, not to tolerate). During a secret roll the hub accepts the previous
secret too (``previous_cdc_secret``), so the relay and the hub need not change at the same instant.
"""

import hashlib
import hmac
from collections.abc import Iterable

from crossledger.plugins.errors import SignatureError

HEADER = "X-Crossledger-Signature"
SCHEME = "v1"
TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``{timestamp}.{body}`` keyed by ``secret``, over the body's raw bytes."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header_value(secret: str, timestamp: int, body: bytes) -> str:
    """What the relay sends in :data:`HEADER` for ``body`` at ``timestamp``."""
    return f"t={timestamp},{SCHEME}={signature(secret, timestamp, body)}"


def verify(value: str | None, body: bytes, secrets: Iterable[str], *, now: float,
           tolerance: float = TOLERANCE_S) -> None:
    """Raise :class:`SignatureError` unless ``value`` signs ``body`` with one of ``secrets`` within
    ``tolerance`` seconds of ``now``. The MAC is checked first, so a forgery is reported as one."""
    if not value:
        raise SignatureError(f"missing {HEADER} header")
    fields = [part.strip().split("=", 1) for part in value.split(",")]
    pairs = [(field[0], field[1]) for field in fields if len(field) == 2]
    stamps = [stamp for name, stamp in pairs if name == "t"]
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()):
        raise SignatureError(f"{HEADER} has no timestamp t=<unix seconds>")
    timestamp = int(stamps[0])
    given = [mac.encode("utf-8", "replace") for name, mac in pairs if name == SCHEME]
    expected = [signature(secret, timestamp, body).encode() for secret in secrets if secret]
    if not expected:
        raise SignatureError("no cdc_secret configured: CDC relay requests cannot be verified")
    if not any(hmac.compare_digest(mac, want) for mac in given for want in expected):
        raise SignatureError(f"no {SCHEME} signature in {HEADER} matches")
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"{HEADER} timestamp t={timestamp} is more than {tolerance:.0f} s from now")
