"""Who may use the console: administrators and their argon2 password hashes in a users file,
and the console secret that signs session cookies and keys the address hashes of reports.

There is no default password: with no users file, nobody can log in until an administrator
runs ``mailscan console adduser NAME``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tasks.errors import ConfigError
from tasks.settings import Settings

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A wrong password costs the guesser this long, whether the user exists or not.
FAILED_LOGIN_DELAY_S = 1.0
# Argon2 takes a core for a while on purpose: this many at once at most, so that a flood of
# logins waits its turn instead of taking every core from the console.
VERIFICATIONS_AT_ONCE = 2
_hasher = PasswordHasher()


def console_dir(settings: Settings) -> Path:
    return settings.var_dir / "console"


def console_secret(settings: Settings) -> bytes:
    """MAILSCAN_CONSOLE_SECRET, or one generated on first use and kept (mode 600) so sessions
    and address hashes stay valid across restarts."""
    if settings.console_secret:
        return settings.console_secret.encode()
    path = console_dir(settings) / "secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_bytes().strip()


class UserFile:
    """The administrators: ``{"users": {name: {"hash": argon2 hash}}}``, readable only by the
    owner. Read on every login, so ``adduser`` needs no console restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Unknown names are checked against this, so they take as long as a wrong password.
        self._dummy_hash = _hasher.hash(secrets.token_hex(16))

    def names(self) -> list[str]:
        return sorted(self._load())

    def add(self, name: str, password: str) -> None:
        if not USER_NAME.match(name):
            raise ConfigError(f"user name {name!r}: use letters, digits, '.', '_' or '-'")
        if len(password) < 8:
            raise ConfigError("the password must have at least 8 characters")
        users = self._load()
        users[name] = {"hash": _hasher.hash(password)}
        self._save(users)

    def remove(self, name: str) -> None:
        users = self._load()
        if name not in users:
            known = ", ".join(sorted(users)) or "none"
            raise ConfigError(
                f"no administrator named {name!r} in {self.path} (administrators: {known})"
            )
        del users[name]
        self._save(users)

    def credential(self, name: str) -> str | None:
        """A fingerprint of the administrator's password hash (None: no such administrator).
        A new password changes it, even the same one again: argon2 salts every hash."""
        stored = self._load().get(name, {}).get("hash")
        return hashlib.sha256(stored.encode()).hexdigest() if stored else None

    def verify(self, name: str, password: str) -> bool:
        """True if the password is right. Slow on purpose (argon2), and as slow for an
        unknown name as for a known one."""
        stored = self._load().get(name, {}).get("hash")
        try:
            return _hasher.verify(stored or self._dummy_hash, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            return dict(json.loads(self.path.read_text()).get("users", {}))
        except FileNotFoundError:
            return {}
        except (ValueError, AttributeError) as err:
            raise ConfigError(f"{self.path}: not a console users file: {err}") from err

    def _save(self, users: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_suffix(".tmp")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"users": users}, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(staging, self.path)


class PasswordCheck:
    """Checks a login's password off the event loop, ``at_once`` at a time at most; a
    wrong one is answered only after the fixed delay (which holds no slot)."""

    def __init__(self, users: UserFile, at_once: int = VERIFICATIONS_AT_ONCE) -> None:
        self.users = users
        self._slots = asyncio.Semaphore(at_once)

    async def check(self, name: str, password: str) -> bool:
        async with self._slots:
            right = await asyncio.to_thread(self.users.verify, name, password)
        if not right:
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)
        return right
