"""Zendesk's webhook signature scheme, shared by the connector (to verify) and the sandbox (to sign).

Every webhook Zendesk sends (event-subscribed or fired by a trigger) is signed with that webhook's
*signing secret*, and the result travels in two headers::

    X-Zendesk-Webhook-Signature: gf3v0LzLRHPUnIdhbvwRDVEvzSb07/QN0GYjSNlkBT0=
    X-Zendesk-Webhook-Signature-Timestamp: 2021-07-25T10:00:00Z

The signature is ``base64(HMAC-SHA256(key = the secret string's bytes, message = timestamp + body))``:
the timestamp header's exact text followed by the raw body, with no separator
(developer.zendesk.com/documentation/webhooks/verifying). The secret is used as the string it is,
never base64-decoded, even though Zendesk's secrets look like base64.

An older copy of Zendesk's page wrote the message as ``body + timestamp``, and its sample vector only
verifies that way. The current scheme is implemented; the old vector is kept in the tests as a
signature that must *not* verify, so a regression to the old order shows.

Zendesk documents no timestamp tolerance (verifying is optional for its customers). The hub refuses
deliveries signed more than ``tolerance`` seconds ago (300 s by default, Stripe's figure): binding the
timestamp into the signature is what makes a captured delivery useless once it is that old.
Timestamps in the future are accepted, as for Stripe, to tolerate clock skew; only Zendesk can sign them.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from crossledger.plugins.errors import SignatureError

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
WEBHOOK_ID_HEADER = "X-Zendesk-Webhook-Id"


def timestamp_text(epoch: float) -> str:
    """Zendesk's signature timestamp: ISO 8601 in UTC to the second, ``2021-07-25T10:00:00Z``."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(secret: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256).digest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The base64 HMAC-SHA256 of ``timestamp + body`` keyed by ``secret``."""
    return base64.b64encode(_digest(secret, timestamp, body)).decode("ascii")


def signature_headers(secret: str, epoch: float, body: bytes) -> dict[str, str]:
    """The two signature headers Zendesk would send with ``body`` signed at ``epoch``."""
    timestamp = timestamp_text(epoch)
    return {SIGNATURE_HEADER: sign(secret, timestamp, body), TIMESTAMP_HEADER: timestamp}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name (the hub lower-cases them, a client may not)."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def verify(headers: Mapping[str, str], body: bytes, secrets: Iterable[str], *, now: float, tolerance: float) -> None:
    """Raise :class:`SignatureError` unless ``body`` was signed with one of ``secrets`` within ``tolerance``.

    ``secrets`` holds every secret a delivery may be signed with (the current one, the previous one
    during a roll). As for Stripe, the signature is checked before the age, so a stale delivery with a
    good signature is reported as stale and a forged one as forged.
    """
    given, timestamp = header(headers, SIGNATURE_HEADER), header(headers, TIMESTAMP_HEADER)
    if not given:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if not timestamp:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header")
    keys = [secret for secret in secrets if secret]
    if not keys:
        raise SignatureError("no webhook secret configured")
    try:
        given_digest = base64.b64decode(given, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SignatureError("the signature is not base64") from error
    if not any(hmac.compare_digest(_digest(key, timestamp, body), given_digest) for key in keys):
        raise SignatureError("no signature matches")
    signed_at = _parse_timestamp(timestamp)
    if signed_at < now - tolerance:
        raise SignatureError(f"timestamp outside tolerance: {timestamp} is more than {tolerance:g}s old")


def _parse_timestamp(text: str) -> float:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not an ISO 8601 time: {text!r}") from error
    if parsed.tzinfo is None:  # Zendesk always says Z; a naive time is read as UTC rather than local
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
