"""Who may sign in to the console: users kept in the hub's store, passwords hashed with scrypt.

A password is never stored: :func:`new_user` keeps a random salt and ``hashlib.scrypt`` of the
password with it, and :func:`authenticate` compares hashes in constant time. An unknown name costs
the same scrypt as a known one, so the time of a refusal does not tell which names exist. A user
made anew (added again: a new password or role) has a new session epoch, which signs out every
session of the user before.
"""

import hashlib
import hmac
import re
import secrets
import time
from typing import get_args

from crossledger.core.console.sessions import new_epoch
from crossledger.core.store.base import Role, Store, UserRecord

ROLES: tuple[Role, ...] = get_args(Role)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 8
# scrypt's cost: 16 MiB and ~50 ms a check, enough to make guessing slow, little enough for a login.
_N, _R, _P = 2**14, 8, 1
_UNKNOWN = UserRecord(name="", role="viewer", salt="00" * 16, password_hash="", created_at=0.0)


class UserError(ValueError):
    """A user that cannot be made: the message says why, in one line."""


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)


def new_user(name: str, role: str, password: str) -> UserRecord:
    """A user record for ``name``; :class:`UserError` for a name, role or password that will not do."""
    if not NAME.fullmatch(name):
        raise UserError(f"a user name is 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter "
                        f"or digit, not {name[:64]!r}")
    if role not in ROLES:
        raise UserError(f"the role must be {' or '.join(ROLES)}, not {role!r}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must be at least {MIN_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    return UserRecord(name=name, role=role, salt=salt.hex(), password_hash=_hash(password, salt).hex(),
                      created_at=time.time(), session_epoch=new_epoch())


def authenticate(store: Store, name: str, password: str) -> UserRecord | None:
    """The user, if ``password`` is theirs; None otherwise (unknown name or wrong password alike)."""
    user = store.user_get(name) if NAME.fullmatch(name) else None
    known = user or _UNKNOWN
    given = _hash(password, bytes.fromhex(known.salt))
    matches = hmac.compare_digest(given, bytes.fromhex(known.password_hash) if user else b"\0" * len(given))
    return user if matches and user is not None else None
