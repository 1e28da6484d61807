"""The SMTP front's session limits, seen by clients on raw sockets: recipients, commands,
errors, connections and time. A client past a limit hears the reply and is let go; every
other client goes on being served meanwhile."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from mailserver.front.connections import TOO_MANY_CONNECTIONS, TOO_MANY_FROM_CLIENT
from mailserver.front.limits import (
    IDLE_TIMEOUT,
    SESSION_TIMEOUT,
    TOO_MANY_ERRORS,
    TOO_MANY_RECIPIENTS,
    TOO_MANY_UNKNOWN,
)
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tasks.wire.keys import SPOOL_REPORT_KEY
from tests.conftest import port, wait_for
from tests.edge_client import EdgeClient, deliver, greeted
from tests.smtp_ends import NextHop

pytestmark = pytest.mark.integration

COMMAND_S, SESSION_S = 1.0, 3.0  # the clocked front's timeouts


def _front(settings: Settings, name: str, n: int, **overrides: str) -> Iterator[int]:
    """A further SMTP front of its own on the stack's Redis and pools; its port."""
    env = {
        **os.environ,
        "MAILSCAN_VAR_DIR": str(settings.var_dir / name),
        "MAILSCAN_SMTP_PORT": str(port(12920) + n),
        "MAILSCAN_METRICS_PORT": str(port(19320) + n),
        "MAILSCAN_HOSTNAME": f"front-{name}",
        **{f"MAILSCAN_{key.upper()}": value for key, value in overrides.items()},
    }
    front_settings = load_settings(env)
    front = Stack(front_settings, env)
    front.start(["mailserver"], progress=lambda _: None)
    try:
        yield front_settings.smtp_port
    finally:
        front.stop()
        redisauth.connect(front_settings).hdel(SPOOL_REPORT_KEY, front_settings.hostname)


@pytest.fixture(scope="module")
def next_hop() -> Iterator[NextHop]:
    with NextHop(port(12910)) as hop:
        yield hop


@pytest.fixture(scope="module")
def strict(stack, settings, next_hop) -> Iterator[int]:
    """Few recipients, commands and errors; mail relayed to the next hop."""
    yield from _front(settings, "edge-strict", 0, smtp_max_recipients="3", smtp_max_commands="8",
                      smtp_max_other_commands="3", smtp_max_errors="6", delivery="relay",
                      relay=f"127.0.0.1:{next_hop.port}")  # fmt: skip


@pytest.fixture(scope="module")
def gated(stack, settings) -> Iterator[int]:
    yield from _front(settings, "edge-gated", 1, smtp_max_connections="4",
                      smtp_max_connections_per_client="2")  # fmt: skip


@pytest.fixture(scope="module")
def clocked(stack, settings) -> Iterator[int]:
    """Short timeouts; post-queue, so that mail of other clients is answered at once."""
    yield from _front(settings, "edge-clocked", 2, smtp_command_timeout_s=str(COMMAND_S),
                      smtp_session_timeout_s=str(SESSION_S), mode="post-queue")  # fmt: skip


def opened(port_: int, source: str = "127.0.0.1") -> EdgeClient:
    client = EdgeClient(port_, source)
    assert client.reply().startswith("220 ")
    assert client.command("EHLO client.example.test").startswith("250")
    return client


def served(port_: int, source: str) -> bool:
    """A whole message from ``source`` is accepted."""
    return deliver(port_, source, f"served {time.time_ns()}")[0] == 250


def admitted(port_: int, source: str) -> EdgeClient:
    """A connection from ``source`` the front greets, once it has room for one (the close
    of an earlier test's connection reaches the front a moment after it is made)."""
    held: list[EdgeClient] = []

    def greeted_now() -> bool:
        client = greeted(port_, source)
        held.extend([client] if client else [])
        return bool(held)

    wait_for(greeted_now, 10, f"a connection from {source} admitted")
    return held[0]


def closed_after(client: EdgeClient, reply: str) -> bool:
    """The client's next reply was ``reply`` and the front then closed the connection."""
    heard = client.reply()
    assert heard == reply
    return client.rest() == b""


# Recipients


def test_past_the_recipient_limit_452_and_the_accepted_recipients_get_the_mail(strict, next_hop):
    marker = f"recipients {time.time_ns()}"
    accepted = [f"r{n}@example.test" for n in range(3)]
    with opened(strict) as client:
        assert client.command("MAIL FROM:<alice@example.test>").startswith("250")
        for rcpt in accepted:
            assert client.command(f"RCPT TO:<{rcpt}>").startswith("250")
        for extra in ("r3@example.test", "r4@example.test"):
            assert client.command(f"RCPT TO:<{extra}>") == TOO_MANY_RECIPIENTS
        assert client.command("DATA").startswith("354")
        client.send(f"Subject: {marker}\r\n\r\n{marker}\r\n.\r\n")
        assert client.reply(60).startswith("250")
        # The limit is per message: the session's next one has its own.
        assert client.command("MAIL FROM:<alice@example.test>").startswith("250")
        assert client.command("RCPT TO:<r3@example.test>").startswith("250")
        assert client.command("QUIT").startswith("221")
    wait_for(lambda: next_hop.copies(accepted[0], marker.encode()) == 1, 60, "the relayed copy")
    copies = [r for r in next_hop.received if marker.encode() in r.content]
    assert [sorted(r.rcpt_tos) for r in copies] == [accepted]


# Commands and errors


def test_a_command_sent_too_often_ends_the_session_while_others_are_served(strict):
    with opened(strict) as chatty:
        assert served(strict, "127.0.0.2")
        for _ in range(3):
            assert chatty.command("NOOP").startswith("250")
        chatty.send("NOOP\r\n")
        assert closed_after(chatty, "421 4.7.0 NOOP sent too many times")
    with opened(strict) as resetting:
        for _ in range(8):
            assert resetting.command("RSET").startswith("250")
        resetting.send("RSET\r\n")
        assert closed_after(resetting, "421 4.7.0 RSET sent too many times")
    assert served(strict, "127.0.0.1")


def test_unknown_commands_end_the_session_with_421(strict):
    with opened(strict) as client:
        for n in range(4):
            assert client.command(f"XYZ{n}").startswith("500")
        client.send("XYZ4\r\n")
        assert closed_after(client, TOO_MANY_UNKNOWN)


def test_errors_since_the_last_message_end_the_session_with_421(strict):
    with opened(strict) as client:
        for _ in range(5):
            assert client.command("") == "500 Error: bad syntax"
        assert served(strict, "127.0.0.2")
        # A whole message clears the count.
        assert client.command("MAIL FROM:<alice@example.test>").startswith("250")
        assert client.command("RCPT TO:<bob@example.test>").startswith("250")
        assert client.command("DATA").startswith("354")
        client.send(f"Subject: errors\r\n\r\n{time.time_ns()}\r\n.\r\n")
        assert client.reply(60).startswith("250")
        for _ in range(6):
            assert client.command("RCPT TO:<bob@example.test>").startswith("503")  # no MAIL
        client.send("\r\n")
        assert closed_after(client, TOO_MANY_ERRORS)


# Connections


def test_a_client_past_its_connections_is_refused_and_gets_its_slot_back(gated):
    held = [admitted(gated, "127.0.0.11") for _ in range(2)]
    with EdgeClient(gated, "127.0.0.11") as third:
        assert third.reply() == TOO_MANY_FROM_CLIENT
        assert third.rest() == b""
    assert served(gated, "127.0.0.12")  # another client is served meanwhile
    held.pop().close()
    held.append(admitted(gated, "127.0.0.11"))  # the slot came back
    for client in held:
        client.close()


def test_past_the_connections_in_all_everyone_is_refused_until_one_ends(gated):
    held = [admitted(gated, source) for source in ("127.0.0.21", "127.0.0.22") for _ in (0, 1)]
    with EdgeClient(gated, "127.0.0.23") as fifth:
        assert fifth.reply() == TOO_MANY_CONNECTIONS
        assert fifth.rest() == b""
    held.pop(0).close()
    wait_for(lambda: served(gated, "127.0.0.23"), 10, "a message once a connection ended")
    assert held[0].command("NOOP").startswith("250")  # the held ones were never disturbed
    for client in held:
        client.close()


# Time


def test_an_idle_client_hears_421_and_is_let_go_while_others_are_served(clocked):
    with opened(clocked) as idle:
        started = time.monotonic()
        assert served(clocked, "127.0.0.31")
        assert closed_after(idle, IDLE_TIMEOUT)
        assert COMMAND_S * 0.9 <= time.monotonic() - started < SESSION_S


def test_a_busy_session_ends_at_its_deadline(clocked):
    with opened(clocked) as busy:
        started = time.monotonic()
        replies = []
        while True:
            try:  # a command at every half idle period, until the front speaks
                replies.append(busy.reply(COMMAND_S / 2))
                break
            except TimeoutError:
                assert busy.command("NOOP").startswith("250")
        assert replies == [SESSION_TIMEOUT]
        assert busy.rest() == b""
        assert time.monotonic() - started >= SESSION_S * 0.9
