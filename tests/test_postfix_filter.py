"""mailscan as Postfix's after-queue content filter (``content_filter``), end to end: a real
client, a private Postfix, mailscan in post-queue mode relaying back to Postfix's second
smtpd, and the next hop behind. What an administrator sees: the reply Postfix gave its
client, ``postqueue -j``, the maillog, and what the next hop received."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from tests.behind_postfix import FILTER_MAILSCAN, Ports, filter_postfix, front_env, running_front
from tests.conftest import EICAR, GTUBE, make_message, port, wait_for
from tests.postfix_instance import CLIENT_ADDRESS, CLIENT_HELO, PostfixInstance, running, send_via
from tests.smtp_ends import NextHop

pytestmark = pytest.mark.integration

PORTS = Ports(client=port(13040), scan=port(13041), back=port(13042), next_hop=port(13043),
              metrics=port(13044))  # fmt: skip
BOB = "bob@example.test"


@pytest.fixture(scope="module")
def hop() -> Iterator[NextHop]:
    with NextHop(PORTS.next_hop) as next_hop:
        yield next_hop


@pytest.fixture(scope="module")
def front(stack, settings):
    yield from running_front(front_env(settings, "filter", PORTS, FILTER_MAILSCAN))


@pytest.fixture(scope="module")
def postfix(front, hop) -> Iterator[PostfixInstance]:
    with running(filter_postfix(PORTS)) as instance:
        yield instance


def _our_received(content: bytes) -> str:
    found = re.search(rb"Received: from [^\r\n]*\r?\n\s+by mailscan-filter[^\r\n]*", content)
    assert found, content[:1500]
    return found.group().decode()


def _delivered_once(hop: NextHop, marker: bytes) -> bytes:
    wait_for(lambda: hop.copies(BOB, marker) >= 1, 90, "the scanned copy at the next hop")
    (copy,) = [r.content for r in hop.received if marker in r.content]
    return copy


def test_clean_mail_reaches_the_next_hop_scanned_naming_the_original_client(postfix, hop):
    marker = b"clean through the content filter"
    reply = send_via(postfix.port, make_message(body=marker.decode()))
    assert reply.code == 250
    copy = _delivered_once(hop, marker)
    assert b"X-Virus-Status: Clean" in copy
    assert b"X-Spam-Flag: NO" in copy
    # XFORWARD: our trace line names Postfix's client and its HELO, not Postfix.
    received = _our_received(copy)
    assert received.startswith(f"Received: from {CLIENT_HELO} (unknown [{CLIENT_ADDRESS}])")
    assert "127.0.0.1" not in received
    wait_for(lambda: not postfix.queue(), 30, "Postfix's queue to empty")
    assert f"relay=127.0.0.1[127.0.0.1]:{PORTS.scan}" in postfix.maillog()


def test_gtube_is_flagged_as_spam(postfix, hop):
    marker = b"gtube through the content filter"
    send_via(postfix.port, make_message(body=f"{marker.decode()}\n{GTUBE}\n"))
    copy = _delivered_once(hop, marker)
    assert b"X-Spam-Flag: YES" in copy


def test_a_virus_is_quarantined_and_reaches_nobody_not_even_as_a_bounce(postfix, hop, front):
    _, front_settings = front
    marker = b"eicar through the content filter"
    reply = send_via(postfix.port, make_message(body=marker.decode(), attachment=EICAR))
    assert reply.code == 250  # Postfix took it before anyone scanned it

    def quarantined() -> bool:
        folder = front_settings.quarantine_dir
        return any(marker in path.read_bytes() for path in folder.glob("*.eml"))

    wait_for(quarantined, 90, "the virus in mailscan's quarantine")
    wait_for(lambda: not postfix.queue(), 30, "Postfix's queue to empty")
    assert hop.copies(BOB, marker) == 0
    assert hop.dsns(marker) == []  # no bounce to the (usually forged) sender
    assert "status=bounced" not in postfix.maillog()


def test_with_mailscan_down_mail_waits_deferred_then_is_delivered_once(postfix, hop, front):
    running_front_, _ = front
    marker = b"deferred while mailscan is away"
    running_front_.stop(["mailserver"])
    try:
        assert send_via(postfix.port, make_message(body=marker.decode())).code == 250

        def deferred() -> list[dict]:
            return [m for m in postfix.queue() if m["queue_name"] == "deferred"]

        wait_for(lambda: bool(deferred()), 30, "the message in Postfix's deferred queue")
        reason = deferred()[0]["recipients"][0]["delay_reason"]
        assert "Connection refused" in reason
        assert hop.copies(BOB, marker) == 0  # nothing passes unscanned
    finally:
        running_front_.start(["mailserver"], progress=lambda _: None)
    postfix.flush()
    copy = _delivered_once(hop, marker)
    assert b"X-Virus-Status: Clean" in copy
    wait_for(lambda: not postfix.queue(), 30, "Postfix's queue to empty")
    assert hop.copies(BOB, marker) == 1


def test_xforward_is_offered_and_taken_only_from_the_networks_it_is_set_for(front):
    # The filter's front takes XFORWARD from Postfix's address alone (127.0.0.1).
    with socket.create_connection(("127.0.0.1", PORTS.scan), timeout=30,
                                  source_address=(CLIENT_ADDRESS, 0)) as sock:  # fmt: skip
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO client.example.test\r\n")
        ehlo = _reply(reader)
        sock.sendall(b"XFORWARD ADDR=192.0.2.7 HELO=forged.example\r\n")
        answer = _reply(reader)
    assert b"XFORWARD" not in ehlo
    assert answer.startswith(b"550 5.7.0")


def _reply(reader) -> bytes:
    lines = [reader.readline()]
    while lines[-1][3:4] == b"-":
        lines.append(reader.readline())
    return b"".join(lines)
