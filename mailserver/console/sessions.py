"""Console sessions kept on the server. The signed cookie carries only a random session id;
Redis keeps who it belongs to, when it began and which password it was opened with. So a
session can be ended from the server: at logout, at its absolute lifetime however busy it
is, and as soon as its administrator gets a new password or is removed (the record holds a
fingerprint of the password hash of its login, which then no longer matches)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable

import redis

from mailserver.console.auth import UserFile
from tasks.wire.keys import CONSOLE_SESSION_KEY


def _key(session_id: str) -> str:
    # Only a digest is stored: whoever reads Redis cannot take over a session with it.
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    return CONSOLE_SESSION_KEY.format(digest=digest)


class Sessions:
    """Begins, looks up and ends console sessions; raises ``redis.RedisError`` when Redis
    cannot answer (then nobody is logged in)."""

    def __init__(
        self,
        client: redis.Redis,
        users: UserFile,
        max_age_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.users = users
        self.max_age_s = max_age_s
        self.clock = clock

    def begin(self, name: str) -> str:
        """A new session for ``name``, who has just given the right password; its id."""
        session_id = secrets.token_urlsafe(32)
        record = {"user": name, "started": self.clock(),
                  "credential": self.users.credential(name)}  # fmt: skip
        self.client.set(_key(session_id), json.dumps(record), ex=max(1, int(self.max_age_s)))
        return session_id

    def who(self, session_id: str) -> str | None:
        """The administrator of a live session; None when it ended, expired or its
        administrator's password changed or the administrator was removed."""
        raw = self.client.get(_key(session_id))
        if raw is None:
            return None
        record = json.loads(raw)
        expired = self.clock() - float(record["started"]) >= self.max_age_s
        if expired or self.users.credential(record["user"]) != record["credential"]:
            self.end(session_id)
            return None
        return str(record["user"])

    def end(self, session_id: str) -> None:
        self.client.delete(_key(session_id))
