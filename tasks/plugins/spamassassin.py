"""SpamAssassin through spamd's SYMBOLS command, and its TELL command to teach Bayes:
aiospamc's request format and response parser over one blocking socket exchange."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiospamc.header_values import ActionOption, Headers, MessageClassOption
from aiospamc.incremental_parser import ParseError, ResponseParser
from aiospamc.requests import Request
from aiospamc.responses import Response, ResponseException
from loguru import logger

from tasks.errors import BackendProtocol, BackendUnavailable
from tasks.plugins.base import Message, Plugin, Verdict
from tasks.plugins.truncation import truncate
from tasks.setting_parsers import Endpoint

RECEIVE_BYTES = 64 * 1024

# aiospamc's parser logs through loguru's default stderr sink; a busy pool would write lines
# for nothing.
logger.disable("aiospamc")


def exchange(endpoint: Endpoint, payload: bytes, timeout_s: float) -> bytes:
    """Send one request and read spamd's answer to its end; spamd closes after each one.

    aiospamc's client does the same through an asyncio event loop: about fifteen loop
    turns and eight ``wait_for`` per request. A pool process scans one message at a time
    and has nothing to overlap the wait with, so a plain socket does the same work
    without them."""
    deadline = time.monotonic() + timeout_s
    with _connect(endpoint, timeout_s) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # spamd reads to the end of what we send
        parts = []
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            part = sock.recv(RECEIVE_BYTES)
            if not part:
                return b"".join(parts)
            parts.append(part)


def _connect(endpoint: Endpoint, timeout_s: float) -> socket.socket:
    if endpoint.socket_path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(endpoint.socket_path))
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s)


def parse(answer: bytes) -> Response:
    """spamd's answer as aiospamc's Response; its error statuses raise aiospamc's errors."""
    try:
        response = Response(**ResponseParser().parse(answer))
    except ParseError as err:
        raise BackendProtocol(f"spamd answered something unreadable: {answer[:80]!r}") from err
    response.raise_for_status()
    return response


@dataclass
class SpamassassinPlugin(Plugin):
    """Asks spamd for the score, the threshold and the names of the rules that hit."""

    name: ClassVar[str] = "spamassassin"
    pools: ClassVar[tuple[str, ...]] = ("spam",)
    _protocol: str = field(default="", init=False, repr=False)

    def _request(self, verb: str, body: bytes = b"", headers: Headers | None = None) -> Response:
        request = bytes(Request(verb, headers=headers, body=body))
        return self.reconnecting(lambda: self._request_once(request))

    def _request_once(self, request: bytes) -> Response:
        endpoint = self.settings.spamd
        try:
            answer = exchange(endpoint, request, self.settings.spamd_timeout_s)
        except TimeoutError as err:
            raise BackendUnavailable(f"spamd at {endpoint} timed out", True) from err
        except OSError as err:
            raise BackendUnavailable(f"spamd at {endpoint}: {err!r}") from err
        if not answer:  # spamd hung up without a word (it was stopped mid-request)
            raise BackendUnavailable(f"spamd at {endpoint} closed the connection unanswered")
        try:
            return parse(answer)
        except ResponseException as err:
            raise BackendProtocol(f"spamd answered an error: {err!r}") from err

    def scan(self, message: Message) -> Verdict:
        started = time.perf_counter()
        given = truncate(message, self.settings.spam_max_bytes)
        response = self._request("SYMBOLS", given)
        self._protocol = f"spamd, protocol SPAMD/{response.version}"
        spam = response.headers.get("Spam")
        if spam is None:
            raise BackendProtocol("spamd answered without a Spam header")
        rules = tuple(r.strip() for r in bytes(response.body).decode().split(",") if r.strip())
        status = "spam" if spam.value else "ham"
        # A truncated message says so: its verdict is on the head of it alone.
        cut = {"scanned_bytes": len(given), "message_bytes": len(message)}
        return self.verdict(
            status, started, score=spam.score, threshold=spam.threshold, rules=rules,
            **(cut if len(given) < len(message) else {}),
        )  # fmt: skip

    def learn(self, message: Message, message_class: str) -> bool:
        """Teach spamd's Bayes ``message`` as ``spam`` or ``ham`` (TELL, ``Set: local``);
        False when Bayes knew it as that class already. A message learnt as the other
        class is forgotten there first (SpamAssassin does that itself)."""
        headers = Headers()
        headers.message_class = MessageClassOption(message_class)
        headers.set_ = ActionOption(local=True)
        response = self._request("TELL", bytes(message), headers)
        return bool(response.headers.did_set and response.headers.did_set.local)

    def health(self) -> str:
        self._request("PING")
        return "PONG"

    def backend_version(self) -> str:
        return self._protocol  # spamd names no version of its own over the protocol

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "spamd": str(self.settings.spamd)}
