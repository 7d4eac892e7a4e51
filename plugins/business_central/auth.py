"""Entra ID access tokens for the Business Central API (OAuth 2.0 client credentials).

``POST {login_url}/{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, the app's
``client_id`` and ``client_secret`` and ``scope=https://api.businesscentral.dynamics.com/.default``
answers a bearer token and its ``expires_in`` (about an hour). The connector keeps one token per
``(login_url, tenant, client_id)`` (:func:`token_key`) for every worker thread of the process, in a
:class:`~crossledger.plugins.tokens.TokenCache`, and fetches a new one
:data:`REFRESH_MARGIN` before the old one expires (never mid-request); a 401 from the API discards
it, in case the token was revoked, and the request is sent once more with a fresh one.
"""

from typing import Final

import httpx
from crossledger.plugins.business_central.settings import BusinessCentralSettings
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.http import classify_http, error_code, status_line
from crossledger.plugins.tokens import Token

SYSTEM: Final = "business_central"
REFRESH_MARGIN: Final = 0.1
"""The share of a token's lifetime left when it is replaced (at least :data:`MIN_MARGIN_S`)."""
MIN_MARGIN_S: Final = 30.0


def token_key(settings: BusinessCentralSettings) -> tuple[str, str, str]:
    """Tokens are shared per Entra app."""
    return settings.login_url, settings.tenant, settings.client_id


def fetch_token(settings: BusinessCentralSettings, http: httpx.Client, now: float) -> Token:
    """A new token from Entra ID, due for refresh :data:`REFRESH_MARGIN` of its life before it expires."""
    url = f"{settings.login_url.rstrip('/')}/{settings.tenant}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": settings.client_id,
            "client_secret": settings.client_secret.get_secret_value(), "scope": settings.scope}
    try:
        response = http.post(url, data=form, headers={"Accept": "application/json"}, timeout=settings.timeout_s)
    except httpx.HTTPError as error:
        raise classify_http(error, f"{SYSTEM} token") from error
    if response.status_code in (400, 401):  # invalid_client, invalid_scope, unknown tenant: wrong settings
        raise ConnectorError(Category.AUTH, f"{SYSTEM} token: {status_line(response)}: {_aad_code(response)}",
                             status=response.status_code)
    try:
        response.raise_for_status()
        body = response.json()
        value, lifetime = body["access_token"], float(body["expires_in"])
    except httpx.HTTPStatusError as error:
        raise classify_http(error, f"{SYSTEM} token") from error
    except (ValueError, KeyError, TypeError) as error:
        raise ConnectorError(Category.TRANSIENT, f"{SYSTEM} token: {status_line(response)} without a token "
                                                 "and its lifetime") from error
    if not isinstance(value, str):
        raise ConnectorError(Category.TRANSIENT, f"{SYSTEM} token: access_token is not a string")
    return Token(value, now + lifetime - max(MIN_MARGIN_S, lifetime * REFRESH_MARGIN))


def _aad_code(response: httpx.Response) -> str:
    """Entra ID's ``error`` code (``invalid_client``), not its description (which may quote input)."""
    try:
        return error_code(response.json().get("error"))
    except (ValueError, AttributeError):
        return "?"
