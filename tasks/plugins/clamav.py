"""ClamAV through clamd's INSTREAM command, over TCP or a Unix socket."""

from __future__ import annotations

import struct
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
from tasks.plugins.base import Message, Plugin, Verdict
from tasks.setting_parsers import Endpoint

IDENTITY_EVERY_S = 60.0
# clamd takes any chunk below its StreamMaxLength. clamav-client sends 1 KiB per chunk, one
# system call each: 25,000 of them, and as many reads in clamd, for a 25 MB message.
STREAM_CHUNK_BYTES = 256 * 1024
SIZE_LIMIT_REPLY = "INSTREAM size limit exceeded. ERROR"


class _Streaming:
    """INSTREAM in large chunks, over clamav-client's own connection and reply parsing."""

    def instream_bytes(self, data: Message) -> dict[str, Any]:
        try:
            self._init_socket()
            self._send_command("INSTREAM")
            try:
                self._send_chunks(memoryview(data))
            except (BrokenPipeError, ConnectionResetError):
                # clamd stops reading at its StreamMaxLength, says why, and hangs up: the
                # reply, not the broken send, tells the caller what happened.
                if self._recv_response() == SIZE_LIMIT_REPLY:
                    raise BufferTooLongError(SIZE_LIMIT_REPLY) from None
                raise
            result = self._recv_response()
            if result == SIZE_LIMIT_REPLY:
                raise BufferTooLongError(result)
            if not result:
                return {}
            filename, reason, status = self._parse_response(result)
            return {filename: (status, reason)}
        finally:
            self._close_socket()

    def _send_chunks(self, view: memoryview) -> None:
        # Length and bytes in one send, and the zero-length end marker with the last chunk:
        # a small message goes out in a single system call.
        for start in range(0, len(view), STREAM_CHUNK_BYTES):
            piece = view[start : start + STREAM_CHUNK_BYTES]
            last = start + STREAM_CHUNK_BYTES >= len(view)
            end = struct.pack("!L", 0) if last else b""
            self.clamd_socket.sendall(struct.pack("!L", len(piece)) + piece + end)
        if not view:
            self.clamd_socket.sendall(struct.pack("!L", 0))


class StreamingNetworkSocket(_Streaming, ClamdNetworkSocket):
    pass


class StreamingUnixSocket(_Streaming, ClamdUnixSocket):
    pass


def clamd_client(endpoint: Endpoint, timeout_s: float) -> StreamingNetworkSocket:
    if endpoint.socket_path:
        return StreamingUnixSocket(str(endpoint.socket_path), timeout=timeout_s)
    return StreamingNetworkSocket(endpoint.host, endpoint.port, timeout=timeout_s)


@dataclass
class ClamavPlugin(Plugin):
    """Scans the whole message with clamd, which unpacks MIME, archives and documents itself."""

    name: ClassVar[str] = "clamav"
    pools: ClassVar[tuple[str, ...]] = ("av",)
    _identity: str = field(default="", init=False, repr=False)
    _identity_at: float = field(default=-IDENTITY_EVERY_S, init=False, repr=False)

    def _client(self) -> StreamingNetworkSocket:
        return clamd_client(self.settings.clamd, self.settings.clamd_timeout_s)

    def scan(self, message: Message) -> Verdict:
        started = time.perf_counter()
        reply = self.reconnecting(lambda: self._instream(message))
        status, virus = reply.get("stream", ("", None))
        if status == "FOUND":
            return self.verdict("infected", started, virus=virus)
        if status == "OK":
            return self.verdict("clean", started)
        raise BackendProtocol(f"clamd answered {reply!r}")

    def _instream(self, message: Message) -> dict[str, Any]:
        try:
            return self._client().instream_bytes(message)
        except CommunicationError as err:
            timed_out = "timed out" in str(err)
            raise BackendUnavailable(f"clamd at {self.settings.clamd}: {err}", timed_out) from err
        except OSError as err:  # the connection dropped while the message was being sent
            timed_out = isinstance(err, TimeoutError)
            raise BackendUnavailable(f"clamd at {self.settings.clamd}: {err!r}", timed_out) from err
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
