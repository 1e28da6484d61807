"""SpamAssassin through spamd's SYMBOLS command, with the aiospamc client."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import aiospamc
from aiospamc.connections import Timeout
from aiospamc.exceptions import AIOSpamcConnectionFailed, ClientTimeoutException
from loguru import logger

from tasks.errors import BackendProtocol, BackendUnavailable
from tasks.plugins.base import Plugin, Verdict

# aiospamc logs every request at INFO through loguru's default stderr sink; a busy pool
# would write one line per message for nothing.
logger.disable("aiospamc")


@dataclass
class SpamassassinPlugin(Plugin):
    """Asks spamd for the score, the threshold and the names of the rules that hit."""

    name: ClassVar[str] = "spamassassin"
    pools: ClassVar[tuple[str, ...]] = ("spam",)

    def _connection(self) -> dict[str, Any]:
        endpoint = self.settings.spamd
        timeout = Timeout(total=self.settings.spamd_timeout_s)
        if endpoint.socket_path:
            return {"socket_path": endpoint.socket_path, "timeout": timeout}
        return {"host": endpoint.host, "port": endpoint.port, "timeout": timeout}

    def _call(self, request: Any, *args: Any) -> Any:
        return self.reconnecting(lambda: self._call_once(request, *args))

    def _call_once(self, request: Any, *args: Any) -> Any:
        try:
            return asyncio.run(request(*args, **self._connection()))
        except (ClientTimeoutException, TimeoutError) as err:
            raise BackendUnavailable(f"spamd at {self.settings.spamd} timed out", True) from err
        except (AIOSpamcConnectionFailed, OSError) as err:
            raise BackendUnavailable(f"spamd at {self.settings.spamd}: {err!r}") from err

    def scan(self, message: bytes) -> Verdict:
        started = time.perf_counter()
        if len(message) > self.settings.spam_max_bytes:
            return self.verdict("skipped", started, detail="larger than MAILSCAN_SPAM_MAX_BYTES")
        response = self._call(aiospamc.symbols, message)
        spam = response.headers.get("Spam")
        if spam is None:
            raise BackendProtocol("spamd answered without a Spam header")
        rules = tuple(r.strip() for r in bytes(response.body).decode().split(",") if r.strip())
        status = "spam" if spam.value else "ham"
        return self.verdict(
            status, started, score=spam.score, threshold=spam.threshold, rules=rules
        )

    def health(self) -> str:
        self._call(aiospamc.ping)
        return "PONG"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "spamd": str(self.settings.spamd)}
