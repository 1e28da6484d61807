"""The session limits' own logic: the connection gate's counts, and the timers around a
handler that takes its time (a stub standing for a slow scan), on uvloop as in the front."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import uvloop
from aiosmtpd.controller import Controller

from mailserver.front.connections import (
    TOO_MANY_CONNECTIONS,
    TOO_MANY_FROM_CLIENT,
    ConnectionGate,
    client_address,
)
from mailserver.front.limits import SESSION_TIMEOUT, SessionLimits
from mailserver.front.smtpsession import LenientSMTP
from tests.edge_client import EdgeClient

SCAN_S = 1.5  # the stub's scan: longer than the idle timeout, past the session deadline


def test_the_gate_counts_per_client_and_in_all_and_forgets_a_client_gone():
    gate = ConnectionGate(max_connections=3, max_per_client=2)
    assert [gate.admit("192.0.2.1") for _ in range(3)] == [None, None, TOO_MANY_FROM_CLIENT]
    assert gate.admit("192.0.2.2") is None
    assert gate.admit("192.0.2.3") == TOO_MANY_CONNECTIONS
    assert (gate.total, gate.of("192.0.2.1")) == (3, 2)  # refusals are not counted
    gate.release("192.0.2.2")
    assert (gate.total, gate.of("192.0.2.2")) == (2, 0)
    assert "192.0.2.2" not in gate._per_client
    assert gate.admit("192.0.2.3") is None


def test_a_client_counts_under_its_one_address():
    assert client_address(("::ffff:192.0.2.7", 25, 0, 0)) == "192.0.2.7"
    assert client_address(("2001:db8::1", 25, 0, 0)) == "2001:db8::1"
    assert client_address(("fe80::1%eth0", 25, 0, 2)) == "fe80::1"
    assert client_address(("192.0.2.7", 25)) == "192.0.2.7"
    assert client_address(None) == ""


class Kept:
    """Our own sink for a message's data (the front's is its spool entry)."""

    def __init__(self) -> None:
        self.content = b""

    async def write(self, data: bytes) -> None:
        self.content += data

    async def discard(self) -> None:
        self.content = b""


class SlowScan:
    """Answers each message after a while, as a pre-queue scan does."""

    def __init__(self) -> None:
        self.messages = 0

    async def open_message(self, session, envelope) -> Kept:
        return Kept()

    async def handle_DATA(self, server, session, envelope, message) -> str:
        await asyncio.sleep(SCAN_S)
        self.messages += 1
        return "250 2.0.0 Ok"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _front(limits: SessionLimits) -> Iterator[tuple[SlowScan, int]]:
    handler = SlowScan()

    class Front(Controller):
        def factory(self):
            return LenientSMTP(self.handler, limits=limits, hostname="test")

    port = _free_port()
    controller = Front(handler, hostname="127.0.0.1", port=port, loop=uvloop.new_event_loop())
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def short_idle() -> Iterator[tuple[SlowScan, int]]:
    yield from _front(SessionLimits(10, 100, 100, 10, command_timeout_s=0.5,
                                    session_timeout_s=60))  # fmt: skip


@pytest.fixture
def short_session() -> Iterator[tuple[SlowScan, int]]:
    yield from _front(SessionLimits(10, 100, 100, 10, command_timeout_s=0.5,
                                    session_timeout_s=1.0))  # fmt: skip


def _send_message(client: EdgeClient) -> str:
    assert client.reply().startswith("220")
    for command in ("EHLO client.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>"):
        assert client.command(command).startswith("250")
    assert client.command("DATA").startswith("354")
    client.send("Subject: slow\r\n\r\nscanned slowly\r\n.\r\n")
    return client.reply()


def test_the_time_a_scan_takes_is_not_the_client_idling(short_idle):
    handler, port = short_idle
    with EdgeClient(port) as client:
        assert _send_message(client).startswith("250")
        # The client has its whole idle period again after the reply.
        assert client.command("NOOP").startswith("250")
    assert handler.messages == 1


def test_a_session_past_its_deadline_during_a_scan_hears_the_verdict_then_421(short_session):
    handler, port = short_session
    with EdgeClient(port) as client:
        started = time.monotonic()
        assert _send_message(client).startswith("250")
        assert client.reply() == SESSION_TIMEOUT
        assert client.rest() == b""
        assert time.monotonic() - started >= SCAN_S
    assert handler.messages == 1
