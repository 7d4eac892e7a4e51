"""Console sessions: a signed cookie, its CSRF token, and who may do what.

The cookie holds the user's name, role, a random CSRF token, when it was issued and the user's
session epoch, as JSON signed with HMAC-SHA256; the key is a random secret kept in the hub's store
(:meth:`Store.secret`), so every web process signs alike and no configuration is needed. The
cookie is ``HttpOnly`` (scripts cannot read it) and ``SameSite=Lax`` (other sites' forms do not
carry it), and expires after :data:`MAX_AGE_S`.

A cookie is stateless, so a copy of it would outlive the sign-out; the epoch revokes it: every
request compares the cookie's epoch with the one the user's record holds now
(:meth:`.access.Access.current`), and signing out (or the user added again, with a new password or
role) gives the user a new one, which refuses every session signed in before.

Every form POST must carry the session's CSRF token (field ``csrf``), checked in constant time; a
viewer may look but not act, and the role is the one the store holds now. Scripts keep using
``/v1`` with the bearer token.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from crossledger.core.store.base import Role, Store, UserRecord

COOKIE = "crossledger_console"
MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    user: str
    role: Role
    csrf: str
    issued_at: float
    epoch: str
    """The user's session epoch when they signed in (:attr:`UserRecord.session_epoch`)."""

    @property
    def operator(self) -> bool:
        return self.role == "operator"


class Signer:
    """Turns a :class:`Session` into a cookie value and back, refusing anything it did not sign."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def of(cls, store: Store) -> "Signer":
        return cls(bytes.fromhex(store.secret("console-session", secrets.token_hex(32))))

    def _mac(self, body: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, body, hashlib.sha256).digest()).decode().rstrip("=")

    def dump(self, session: Session) -> str:
        body = base64.urlsafe_b64encode(json.dumps(
            [session.user, session.role, session.csrf, session.issued_at, session.epoch]).encode()).decode().rstrip("=")
        return f"{body}.{self._mac(body.encode())}"

    def load(self, value: str | None, now: float | None = None) -> Session | None:
        """The session the cookie holds; None when absent, forged, altered or expired."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body.encode()).encode()):
            return None
        try:
            user, role, csrf, issued_at, epoch = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, TypeError):  # not JSON, or not the five values (a cookie of an older version)
            return None
        if (now or time.time()) - float(issued_at) > MAX_AGE_S or role not in ("viewer", "operator"):
            return None
        return Session(str(user), role, str(csrf), float(issued_at), str(epoch))


def new_session(user: UserRecord) -> Session:
    return Session(user.name, user.role, secrets.token_urlsafe(24), time.time(), user.session_epoch)


def new_epoch() -> str:
    """A fresh session epoch (:attr:`UserRecord.session_epoch`)."""
    return secrets.token_urlsafe(12)


def csrf_matches(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())
