"""SpamAssassin through spamd's SYMBOLS command, with the aiospamc client."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiospamc.client import Client
from aiospamc.connections import (
    ConnectionManager,
    TcpConnectionManager,
    Timeout,
    UnixConnectionManager,
)
from aiospamc.exceptions import AIOSpamcConnectionFailed, ClientTimeoutException
from aiospamc.requests import Request
from loguru import logger

from tasks.errors import BackendProtocol, BackendUnavailable
from tasks.plugins.base import Plugin, Verdict

# aiospamc logs every request at INFO through loguru's default stderr sink; a busy pool
# would write one line per message for nothing.
logger.disable("aiospamc")


@dataclass
class SpamassassinPlugin(Plugin):
    """Asks spamd for the score, the threshold and the names of the rules that hit.

    The client and its event loop are made once per pool process: aiospamc's one-call
    helpers build a TLS context each time (about 30 ms of CPU), more than the rest of the
    request together, even for a plain TCP connection."""

    name: ClassVar[str] = "spamassassin"
    pools: ClassVar[tuple[str, ...]] = ("spam",)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _client: Client | None = field(default=None, init=False, repr=False)
    _protocol: str = field(default="", init=False, repr=False)

    def _manager(self) -> ConnectionManager:
        endpoint = self.settings.spamd
        timeout = Timeout(total=self.settings.spamd_timeout_s)
        if endpoint.socket_path:
            return UnixConnectionManager(endpoint.socket_path, timeout)
        return TcpConnectionManager(endpoint.host, endpoint.port, None, timeout)

    def _request(self, verb: str, body: bytes = b"") -> Any:
        return self.reconnecting(lambda: self._request_once(verb, body))

    def _request_once(self, verb: str, body: bytes) -> Any:
        if self._loop is None or self._client is None:
            self._loop, self._client = asyncio.new_event_loop(), Client(self._manager())
        try:
            return self._loop.run_until_complete(self._client.request(Request(verb, body=body)))
        except (ClientTimeoutException, TimeoutError) as err:
            raise BackendUnavailable(f"spamd at {self.settings.spamd} timed out", True) from err
        except (AIOSpamcConnectionFailed, OSError) as err:
            raise BackendUnavailable(f"spamd at {self.settings.spamd}: {err!r}") from err

    def scan(self, message: bytes) -> Verdict:
        started = time.perf_counter()
        if len(message) > self.size_limit():
            return self.too_large(started)
        response = self._request("SYMBOLS", message)
        self._protocol = f"spamd, protocol SPAMD/{response.version}"
        spam = response.headers.get("Spam")
        if spam is None:
            raise BackendProtocol("spamd answered without a Spam header")
        rules = tuple(r.strip() for r in bytes(response.body).decode().split(",") if r.strip())
        status = "spam" if spam.value else "ham"
        return self.verdict(
            status, started, score=spam.score, threshold=spam.threshold, rules=rules
        )

    def size_limit(self) -> int:
        return self.settings.spam_max_bytes  # as a classic content filter skips big mail

    def health(self) -> str:
        self._request("PING")
        return "PONG"

    def backend_version(self) -> str:
        return self._protocol  # spamd names no version of its own over the protocol

    def reset(self) -> None:
        # After a time limit or a failure the loop may hold a half-done request: start afresh.
        if self._loop is not None:
            self._loop.close()
        self._loop, self._client = None, None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "spamd": str(self.settings.spamd)}
