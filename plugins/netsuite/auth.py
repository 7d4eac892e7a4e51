"""NetSuite token-based authentication (TBA): OAuth 1.0a with HMAC-SHA256, both sides of it.

Every request to SuiteTalk REST carries one header::

    Authorization: OAuth realm="1234567_SB1", oauth_consumer_key="...", oauth_token="...",
        oauth_signature_method="HMAC-SHA256", oauth_timestamp="...", oauth_nonce="...",
        oauth_version="1.0", oauth_signature="..."

The signature is base64(HMAC-SHA256(``consumer_secret&token_secret``, base string)), where the base
string is RFC 5849's ``METHOD&enc(url without query)&enc(sorted parameters)``. Three details
commonly break clients, so the sandbox checks all of them:

- the query parameters (``?limit=10&offset=20``) are part of the signed parameters;
- ``realm`` is the account id, sent in the header but *excluded* from the base string;
- a nonce may be used once per timestamp, and the timestamp must be recent.

:class:`NetSuiteAuth` signs outgoing requests (the connector). :class:`TbaVerifier` checks them
(the sandbox). Both lean on ``oauthlib``'s RFC 5849 implementation rather than re-deriving the
base string, so that a bug cannot hide by being the same on both sides.

A JSON body is not signed: RFC 5849 only signs form-encoded bodies, and NetSuite follows it.
"""

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from oauthlib import oauth1
from oauthlib.oauth1.rfc5849 import signature, utils

Clock = Callable[[], float]

SIGNATURE_METHOD = oauth1.SIGNATURE_HMAC_SHA256
TIMESTAMP_WINDOW_S = 300
"""How far (either way) a request's ``oauth_timestamp`` may be from the server's clock."""
MIN_NONCE_LENGTH = 6
"""NetSuite rejects shorter nonces (``nonce_rejected``); 20 characters or more are recommended."""


@dataclass(frozen=True)
class TbaCredentials:
    """One integration record (consumer) plus one access token, for one account."""

    account_id: str
    consumer_key: str
    consumer_secret: str
    token_id: str
    token_secret: str

    @classmethod
    def generate(cls, account_id: str) -> "TbaCredentials":
        """Fresh random credentials shaped like NetSuite's (64 hex characters each)."""
        return cls(account_id, *(secrets.token_hex(32) for _ in range(4)))

    def oauth_client(self, timestamp: str | None = None) -> oauth1.Client:
        """oauthlib's RFC 5849 signer for these credentials (HMAC-SHA256, realm = account id)."""
        return oauth1.Client(
            self.consumer_key,
            client_secret=self.consumer_secret,
            resource_owner_key=self.token_id,
            resource_owner_secret=self.token_secret,
            signature_method=SIGNATURE_METHOD,
            realm=self.account_id,
            timestamp=timestamp,
        )


class NetSuiteAuth(httpx.Auth):
    """Signs each request for NetSuite TBA; pass it as ``auth=`` to any httpx call.

    A new nonce and timestamp are drawn for every request (and every retry of it), so replaying a
    signed request is something only an attacker, or a test, does. ``clock`` returns Unix seconds;
    it exists so that a test can sign a request from the past.
    """

    def __init__(
        self,
        account_id: str,
        consumer_key: str,
        consumer_secret: str,
        token_id: str,
        token_secret: str,
        *,
        clock: Clock = time.time,
    ) -> None:
        self._credentials = TbaCredentials(account_id, consumer_key, consumer_secret, token_id, token_secret)
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.authorization(request.method, str(request.url))
        yield request

    def authorization(self, method: str, url: str) -> str:
        """The ``Authorization`` header value for ``method`` on ``url`` (query included)."""
        client = self._credentials.oauth_client(timestamp=str(int(self._clock())))
        _, headers, _ = client.sign(url, http_method=method)
        return str(headers["Authorization"])


class InvalidLogin(Exception):
    """A request that fails TBA. ``reason`` is what NetSuite writes to its Login Audit Trail;
    the caller only ever sees a generic 401 ``INVALID_LOGIN``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TbaVerifier:
    """Checks TBA headers the way NetSuite does, including nonce replay; thread-safe.

    Checks run cheapest first, and the nonce is only remembered once the signature is proven, so
    forged requests cannot burn nonces for the real client.
    """

    def __init__(self, credentials: TbaCredentials, clock: Clock = time.time) -> None:
        self._credentials = credentials
        self._signer = credentials.oauth_client()
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}  # (nonce, timestamp) -> when to forget it

    def verify(self, method: str, url: str, authorization: str | None) -> None:
        """Raise :class:`InvalidLogin` unless ``authorization`` signs ``method url`` for our account.

        ``url`` must be the URL exactly as the client addressed it: scheme, ``Host`` header, the
        percent-encoded path (prefix included when the app is mounted) and the query string.
        """
        params = _oauth_params(authorization)
        self._check_identity(params)
        timestamp = self._check_timestamp(params.get("oauth_timestamp", ""))
        nonce = params.get("oauth_nonce", "")
        if len(nonce) < MIN_NONCE_LENGTH:
            raise InvalidLogin("nonce_rejected")
        expected = self._expected_signature(method, url, authorization or "")
        if not hmac.compare_digest(params.get("oauth_signature", ""), expected):
            raise InvalidLogin("signature_invalid")
        self._remember(nonce, timestamp)

    def _check_identity(self, params: dict[str, str]) -> None:
        creds = self._credentials
        if params.get("realm") != creds.account_id:
            raise InvalidLogin("realm_invalid")
        if params.get("oauth_signature_method") != SIGNATURE_METHOD:
            raise InvalidLogin("signature_method_rejected")
        if params.get("oauth_consumer_key") != creds.consumer_key:
            raise InvalidLogin("consumer_key_unknown")
        if params.get("oauth_token") != creds.token_id:
            raise InvalidLogin("token_rejected")

    def _check_timestamp(self, raw: str) -> str:
        if not (raw.isascii() and raw.isdigit()) or abs(self._clock() - int(raw)) > TIMESTAMP_WINDOW_S:
            raise InvalidLogin("timestamp_refused")
        return raw

    def _expected_signature(self, method: str, url: str, authorization: str) -> str:
        """Rebuild the base string from the request as received and sign it with our secrets."""
        collected = signature.collect_parameters(uri_query=urlsplit(url).query,
                                                 headers={"Authorization": authorization})
        base_string = signature.signature_base_string(
            method.upper(), signature.base_string_uri(url), signature.normalize_parameters(collected)
        )
        return str(signature.sign_hmac_sha256_with_client(base_string, self._signer))

    def _remember(self, nonce: str, timestamp: str) -> None:
        now = self._clock()
        with self._lock:
            self._seen = {key: forget_at for key, forget_at in self._seen.items() if forget_at > now}
            if (nonce, timestamp) in self._seen:
                raise InvalidLogin("nonce_used")
            self._seen[(nonce, timestamp)] = now + 2 * TIMESTAMP_WINDOW_S


def _oauth_params(authorization: str | None) -> dict[str, str]:
    """The header's parameters (realm included), decoded; ``parameter_absent`` when unusable."""
    if not authorization or not authorization.startswith("OAuth "):
        raise InvalidLogin("parameter_absent")
    try:
        pairs = utils.parse_authorization_header(authorization)
    except ValueError as error:
        raise InvalidLogin("parameter_absent") from error
    return {name: utils.unescape(value) for name, value in pairs}
