"""mailscan as Postfix's before-queue proxy (``smtpd_proxy_filter``), end to end: a real
client talks to a private Postfix whose smtpd passes the session to mailscan in pre-queue
mode; mailscan relays accepted mail to Postfix's second smtpd, and on to the next hop. The
client hears mailscan's verdict from Postfix: 250, 550 naming the virus, or 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.behind_postfix import PROXY_MAILSCAN, Ports, front_env, proxy_postfix, running_front
from tests.conftest import EICAR, GTUBE, make_message, port, wait_for
from tests.postfix_instance import CLIENT_ADDRESS, CLIENT_HELO, PostfixInstance, running, send_via
from tests.smtp_ends import NextHop

pytestmark = pytest.mark.integration

PORTS = Ports(client=port(13050), scan=port(13051), back=port(13052), next_hop=port(13053),
              metrics=port(13054))  # fmt: skip
BOB = "bob@example.test"


@pytest.fixture(scope="module")
def hop() -> Iterator[NextHop]:
    with NextHop(PORTS.next_hop) as next_hop:
        yield next_hop


@pytest.fixture(scope="module")
def front(stack, settings):
    yield from running_front(front_env(settings, "proxy", PORTS, PROXY_MAILSCAN))


@pytest.fixture(scope="module")
def postfix(front, hop) -> Iterator[PostfixInstance]:
    with running(proxy_postfix(PORTS)) as instance:
        yield instance


def test_clean_mail_is_accepted_and_reaches_the_next_hop_scanned(postfix, hop):
    marker = b"clean through the proxy"
    reply = send_via(postfix.port, make_message(body=marker.decode()))
    assert reply.code == 250
    wait_for(lambda: hop.copies(BOB, marker) == 1, 60, "the scanned copy at the next hop")
    (copy,) = [r.content for r in hop.received if marker in r.content]
    assert b"X-Virus-Status: Clean" in copy
    assert b"X-Spam-Flag: NO" in copy
    # Postfix's proxy passes XFORWARD too: our trace line names its client.
    assert f"Received: from {CLIENT_HELO} (unknown [{CLIENT_ADDRESS}])".encode() in copy


def test_gtube_is_flagged_as_spam(postfix, hop):
    marker = b"gtube through the proxy"
    assert send_via(postfix.port, make_message(body=f"{marker.decode()}\n{GTUBE}\n")).code == 250
    wait_for(lambda: hop.copies(BOB, marker) == 1, 60, "the flagged copy at the next hop")
    (copy,) = [r.content for r in hop.received if marker in r.content]
    assert b"X-Spam-Flag: YES" in copy


def test_a_virus_is_refused_to_postfix_s_client_naming_it_and_reaches_nobody(postfix, hop):
    marker = b"eicar through the proxy"
    reply = send_via(postfix.port, make_message(body=marker.decode(), attachment=EICAR))
    assert reply.code == 550
    assert "virus found" in reply.text
    assert "EICAR" in reply.text
    assert not postfix.queue()  # nothing of it kept, so no bounce can follow
    assert hop.copies(BOB, marker) == 0
    assert hop.dsns(marker) == []


def test_a_scan_that_cannot_finish_is_answered_451(postfix, hop, front, settings):
    running_front_, _ = front
    marker = b"no verdict in time through the proxy"
    running_front_.stop(["mailserver"])
    # The same front, on the same port, with a deadline no scan can meet.
    hurried = front_env(settings, "proxy", PORTS, PROXY_MAILSCAN, scan_deadline_s="0.01")
    try:
        for _ in running_front(hurried):
            reply = send_via(postfix.port, make_message(body=marker.decode()))
    finally:
        running_front_.start(["mailserver"], progress=lambda _: None)
    assert reply.code == 451
    assert "Content scan could not finish" in reply.text
    assert not postfix.queue()
    assert hop.copies(BOB, marker) == 0


def test_with_mailscan_down_the_client_hears_4xx_and_nothing_passes(postfix, hop, front):
    running_front_, _ = front
    marker = b"mailscan away behind the proxy"
    running_front_.stop(["mailserver"])
    try:
        reply = send_via(postfix.port, make_message(body=marker.decode()))
    finally:
        running_front_.start(["mailserver"], progress=lambda _: None)
    assert reply.code == 451  # Postfix words it "Error: queue file write error"
    assert not postfix.queue()
    assert hop.copies(BOB, marker) == 0
    # The client sends it again, as a sending MTA does after a 4xx: now it goes through.
    assert send_via(postfix.port, make_message(body=marker.decode())).code == 250
    wait_for(lambda: hop.copies(BOB, marker) == 1, 60, "the copy sent again")
