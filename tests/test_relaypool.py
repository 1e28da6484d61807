"""Relay delivery keeps its connections to the next hop open: many messages through a
relaying front take a few connections, each message arrives once, also from a next hop that
closes each connection after its message, and a message whose DATA reply was lost is never
sent a second time by the pool."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mailserver.front.delivery import RelayDelivery
from mailserver.front.spool import Envelope
from mailserver.supervisor.stack import Stack
from tasks.errors import DeliveryError
from tasks.settings import load_settings
from tests.conftest import make_message, port, send, wait_for
from tests.smtp_ends import NextHop

MESSAGES = 12
KEEP = 2  # MAILSCAN_RELAY_CONNECTIONS of the front here


@pytest.fixture
def next_hop() -> Iterator[NextHop]:
    with NextHop(port(13070)) as hop:
        yield hop


@pytest.fixture
def relay_front(stack, settings, next_hop) -> Iterator[int]:
    env = {
        **os.environ,
        "MAILSCAN_VAR_DIR": str(settings.var_dir / "relaypool"),
        "MAILSCAN_SMTP_PORT": str(port(13071)),
        "MAILSCAN_METRICS_PORT": str(port(19380)),
        "MAILSCAN_HOSTNAME": "front-relaypool",
        "MAILSCAN_DELIVERY": "relay",
        "MAILSCAN_RELAY": f"127.0.0.1:{next_hop.port}",
        "MAILSCAN_RELAY_CONNECTIONS": str(KEEP),
    }
    front = Stack(load_settings(env), env)
    front.start(["mailserver"], progress=lambda _: None)
    try:
        yield port(13071)
    finally:
        front.stop()


@pytest.mark.integration
def test_a_relaying_front_sends_many_messages_on_few_connections(relay_front, next_hop):
    markers = [f"pooled-{n}-{os.getpid()}." for n in range(MESSAGES)]
    for marker in markers:
        reply = send(make_message(marker), relay_front)
        assert reply.code == 250, reply
    wait_for(lambda: all(next_hop.copies("bob@example.test", m.encode()) for m in markers), 30,
             "every message at the next hop")  # fmt: skip
    assert [next_hop.copies("bob@example.test", m.encode()) for m in markers] == [1] * MESSAGES
    assert next_hop.sessions <= KEEP, f"{next_hop.sessions} connections for {MESSAGES} messages"


def _relay(next_hop: NextHop, keep: int = 4) -> RelayDelivery:
    return RelayDelivery("127.0.0.1", next_hop.port, timeout_s=10, keep=keep)


def _message(marker: str) -> bytes:
    return make_message(marker).as_bytes().replace(b"\n", b"\r\n")


def _copies(next_hop: NextHop, prefix: str) -> list[int]:
    """How many copies of each message the next hop has."""
    return [next_hop.copies("bob@example.test", f"{prefix}-{n}.".encode()) for n in range(MESSAGES)]


ENVELOPE = Envelope("alice@example.test", ("bob@example.test",))


def test_one_connection_carries_one_message_after_another(next_hop):
    relay = _relay(next_hop)
    for n in range(MESSAGES):
        relay.deliver(f"entry{n}", ENVELOPE, _message(f"kept-{n}."))
    relay.close()
    assert _copies(next_hop, "kept") == [1] * MESSAGES
    assert next_hop.sessions == 1


def test_a_next_hop_that_closes_idle_connections_still_gets_every_message_once(next_hop):
    next_hop.drop_after_message = True
    relay = _relay(next_hop)
    for n in range(MESSAGES):
        relay.deliver(f"entry{n}", ENVELOPE, _message(f"dropped-{n}."))
    relay.close()
    assert _copies(next_hop, "dropped") == [1] * MESSAGES
    assert next_hop.sessions == MESSAGES


def test_a_lost_reply_to_data_is_a_failed_delivery_never_a_second_copy(next_hop):
    relay = _relay(next_hop)
    relay.deliver("entry0", ENVELOPE, _message("before-lost"))
    next_hop.vanish_at_data = True  # takes the message, closes before its 250
    with pytest.raises(DeliveryError) as failed:
        relay.deliver("entry1", ENVELOPE, _message("lost-reply"))
    assert not failed.value.permanent  # tried again later, as any next hop away
    assert next_hop.copies("bob@example.test", b"lost-reply") == 1
    assert next_hop.sessions == 1


def test_a_connection_idle_too_long_is_closed_and_a_new_one_opened(next_hop):
    relay = _relay(next_hop)
    relay.pool.idle_s = 0.0  # every kept connection is past its idle time at once
    for n in range(3):
        relay.deliver(f"entry{n}", ENVELOPE, _message(f"idle-{n}"))
    relay.close()
    assert next_hop.sessions == 3
    assert next_hop.quits == 3  # each one closed with QUIT, not left to the next hop
