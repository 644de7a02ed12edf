"""Dashboard users: a JSON file of (username, role, password hash, disabled).

Passwords are hashed with scrypt from the standard library (memory-hard, no extra dependency to
keep patched). The file lives at $EWI_HOME/dashboard/users.json unless EWI_DASHBOARD_USERS names
another file; EWI_DASHBOARD_USERS may instead hold users as JSON, which count beside the file's
(`{}` or empty: none). `ewi dashboard add-user|set-role|disable-user|enable-user|delete-user`
change the file; the dashboard reads it on every request, so a change applies at the next page.
Users who log in through single sign-on are not kept here: their identity provider keeps them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ewi import config
from ewi.settings import get_settings

log = logging.getLogger(__name__)

ROLES = ("coordinator", "auditor")
DEMO_USERS = {"coordinator": "coordinator", "auditor": "auditor"}  # username -> role

# n=2**14, r=8 costs 16 MiB and ~50 ms per check: slow for guessing, fine for a login form.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True)
class User:
    username: str
    role: str
    password_hash: str
    disabled: bool = False


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


class MalformedPasswordHash(ValueError):
    """A stored password hash that cannot be checked: it refuses every password."""


def _scrypt_parameters(password_hash: str) -> tuple[int, int, int, bytes, bytes]:
    try:
        scheme, n, r, p, salt, digest = password_hash.split("$")
        n, r, p = int(n), int(r), int(p)
        salt, digest = base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)
    except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
        raise MalformedPasswordHash("not scrypt$n$r$p$salt$digest") from exc
    # hash_password writes 16 bytes of salt and 32 of digest; less is a damaged or forged entry
    if scheme != "scrypt" or n < 2 or n & (n - 1) or r < 1 or p < 1 or len(salt) < 16 or len(digest) < 16:
        raise MalformedPasswordHash("scrypt parameters out of range")
    return n, r, p, salt, digest


def verify_password(password: str, password_hash: str) -> bool:
    """Whether the password matches; raises MalformedPasswordHash when the stored hash cannot be
    checked, so that the caller refuses the login and says why in the log (never a silent match)."""
    n, r, p, salt, expected = _scrypt_parameters(password_hash)
    try:
        actual = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected),
                                maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # e.g. a cost beyond maxmem
        raise MalformedPasswordHash("scrypt refused the parameters") from exc
    return hmac.compare_digest(actual, expected)


# Checking a password against this for unknown usernames keeps the response time the same, so the
# login form does not tell which usernames exist.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


def _configured() -> str:
    return get_settings().dashboard_users.strip()


def _holds_json(configured: str) -> bool:
    return configured.startswith(("{", "["))


def users_file() -> Path:
    """The users file that `ewi dashboard add-user` writes: EWI_DASHBOARD_USERS when it names a
    file, else $EWI_HOME/dashboard/users.json (on the ewi-home volume in docker compose)."""
    configured = _configured()
    if configured and not _holds_json(configured):
        return Path(configured)
    return config.ewi_home() / "dashboard" / "users.json"


def _parse(data) -> dict[str, User]:
    entries = data.get("users", []) if isinstance(data, dict) else data
    users = {}
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and e.get("role") in ROLES and e.get("username") and e.get("password_hash"):
            users[e["username"]] = User(e["username"], e["role"], e["password_hash"], bool(e.get("disabled")))
    return users


def environment_users() -> dict[str, User]:
    """Users given as JSON in EWI_DASHBOARD_USERS. `{}`, `[]` or nothing: none (the users file
    still counts: an empty value used to hide it, and nobody could log in to a compose install)."""
    configured = _configured()
    return _parse(json.loads(configured)) if _holds_json(configured) else {}


def file_users() -> dict[str, User]:
    path = users_file()
    if not path.exists():
        return {}
    return _parse(json.loads(path.read_text(encoding="utf-8")))


def load_users() -> dict[str, User]:
    """Every local user, enabled or not: the users file's, and the environment's beside them (an
    environment entry wins over a file entry of the same name, since the file cannot change it)."""
    return {**file_users(), **environment_users()}


def authenticate(username: str, password: str) -> User | None:
    user = load_users().get(username)
    if user is None or user.disabled:
        verify_password(password, _DUMMY_HASH)
        return None
    try:
        return user if verify_password(password, user.password_hash) else None
    except MalformedPasswordHash as exc:
        # fail closed, loudly: the entry must be set again (`ewi dashboard add-user`)
        log.error("dashboard user %s cannot log in: the stored password hash is malformed (%s)", username, exc)
        return None


class UserChangeRefused(ValueError):
    """A change the users file cannot make (no such user, a user given in the environment);
    the message says which and why, without a password or hash."""


def save_users(users: dict[str, User] | Iterable[User], path: Path | None = None) -> Path:
    path = path or users_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = users.values() if isinstance(users, dict) else users
    body = {"users": [{"username": u.username, "role": u.role, "password_hash": u.password_hash,
                       **({"disabled": True} if u.disabled else {})} for u in entries]}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh, indent=2)
    os.replace(tmp, path)
    return path


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UserChangeRefused(f"role must be one of {', '.join(ROLES)}")


def _file_user(username: str) -> tuple[dict[str, User], User]:
    """The users file's users and the one named; refused for a user from the environment."""
    if username in environment_users():
        raise UserChangeRefused(f"user {username} is given in EWI_DASHBOARD_USERS; change it there")
    users = file_users()
    if username not in users:
        raise UserChangeRefused(f"no user {username} in {users_file()}")
    return users, users[username]


def set_user(username: str, role: str, password: str) -> User:
    """Create or update one user in the users file (enabled, with this role and password)."""
    _check_role(role)
    if username in environment_users():
        raise UserChangeRefused(f"user {username} is given in EWI_DASHBOARD_USERS; change it there")
    users = file_users()
    users[username] = User(username, role, hash_password(password))
    save_users(users)
    return users[username]


def set_role(username: str, role: str) -> User:
    """A new role; the user's sessions stay and get the new role at their next page."""
    _check_role(role)
    users, user = _file_user(username)
    users[username] = User(username, role, user.password_hash, user.disabled)
    save_users(users)
    return users[username]


def set_disabled(username: str, disabled: bool) -> User:
    """Disable (or enable again) a user: a disabled user cannot log in and their sessions end."""
    users, user = _file_user(username)
    users[username] = User(username, user.role, user.password_hash, disabled)
    save_users(users)
    return users[username]


def remove_user(username: str) -> bool:
    """Take one user out of the users file; False when there was no such user."""
    try:
        users, _ = _file_user(username)
    except UserChangeRefused:
        if username in environment_users():
            raise
        return False
    del users[username]
    save_users(users)
    return True


def ensure_demo_users() -> dict[str, str]:
    """Make sure the demo users `coordinator` and `auditor` exist. Returns {username: password}
    for the users created now (the only moment their passwords are known); empty when they all
    existed already."""
    existing = file_users()
    created = {}
    for username, role in DEMO_USERS.items():
        if username not in existing:
            password = secrets.token_urlsafe(9)
            existing[username] = User(username, role, hash_password(password))
            created[username] = password
    if created:
        save_users(existing)
    return created
