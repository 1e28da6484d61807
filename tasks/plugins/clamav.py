"""ClamAV through clamd's INSTREAM command, over TCP or a Unix socket."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from clamav_client.clamd import (
    BufferTooLongError,
    ClamdNetworkSocket,
    ClamdUnixSocket,
    CommunicationError,
    ResponseError,
)

from tasks.errors import BackendProtocol, BackendUnavailable, ScanError
from tasks.plugins.base import Plugin, Verdict

IDENTITY_EVERY_S = 60.0


@dataclass
class ClamavPlugin(Plugin):
    """Scans the whole message with clamd, which unpacks MIME, archives and documents itself."""

    name: ClassVar[str] = "clamav"
    pools: ClassVar[tuple[str, ...]] = ("av",)
    _identity: str = field(default="", init=False, repr=False)
    _identity_at: float = field(default=-IDENTITY_EVERY_S, init=False, repr=False)

    def _client(self) -> ClamdNetworkSocket:
        endpoint, timeout = self.settings.clamd, self.settings.clamd_timeout_s
        if endpoint.socket_path:
            return ClamdUnixSocket(str(endpoint.socket_path), timeout=timeout)
        return ClamdNetworkSocket(endpoint.host, endpoint.port, timeout=timeout)

    def scan(self, message: bytes) -> Verdict:
        started = time.perf_counter()
        reply = self.reconnecting(lambda: self._instream(message))
        status, virus = reply.get("stream", ("", None))
        if status == "FOUND":
            return self.verdict("infected", started, virus=virus)
        if status == "OK":
            return self.verdict("clean", started)
        raise BackendProtocol(f"clamd answered {reply!r}")

    def _instream(self, message: bytes) -> dict[str, Any]:
        try:
            return self._client().instream(io.BytesIO(message))
        except CommunicationError as err:
            timed_out = "timed out" in str(err)
            raise BackendUnavailable(f"clamd at {self.settings.clamd}: {err}", timed_out) from err
        except BufferTooLongError as err:
            raise ScanError(f"clamd refused the message as too large: {err}") from err
        except ResponseError as err:
            raise BackendProtocol(f"clamd answered an error: {err}") from err

    def health(self) -> str:
        try:
            return self._client().version()
        except (CommunicationError, OSError) as err:
            raise BackendUnavailable(f"clamd at {self.settings.clamd}: {err}") from err

    def cache_identity(self) -> str | None:
        # clamd's VERSION names the signature database ("ClamAV 1.4.6/27512/..."): asked
        # once a minute, so a signature update starts a new cache within a minute.
        now = time.monotonic()
        if now - self._identity_at > IDENTITY_EVERY_S:
            try:
                self._identity = f"clamav {self.health()}"
            except BackendUnavailable:
                return None
            self._identity_at = now
        return self._identity

    def backend_version(self) -> str:
        return self._identity.removeprefix("clamav ")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "clamd": str(self.settings.clamd)}
