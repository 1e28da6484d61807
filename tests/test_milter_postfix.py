"""The milter behind a real Postfix: a private instance with ``smtpd_milters`` pointing at
``mailscan milter``, the real pools, and a next hop on loopback. What is asserted is what a
Postfix administrator sees: the replies Postfix gives its client, its queue, its log, and
what the next hop received."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator

import pytest

from tests.conftest import EICAR, GTUBE, make_message, port, wait_for
from tests.milter_front import MilterFront
from tests.postfix_instance import (
    CLIENT_ADDRESS,
    CLIENT_HELO,
    PostfixInstance,
    running,
    send_via,
)
from tests.smtp_ends import NextHop

pytestmark = pytest.mark.integration


def milter_main(front: MilterFront, **more: str) -> dict[str, str]:
    """The main.cf lines of the README's recipe ("Behind Postfix")."""
    return {
        "smtpd_milters": front.postfix_name,
        "non_smtpd_milters": "",
        "milter_protocol": "6",
        "milter_default_action": "tempfail",
        **more,
    }


@pytest.fixture(scope="module")
def next_hop() -> Iterator[NextHop]:
    with NextHop(port(14101)) as hop:
        yield hop


@pytest.fixture(scope="module")
def milter(stack) -> Iterator[MilterFront]:
    front = MilterFront("milter-postfix", 4, overrides={"spam_subject_tag": "[SPAM]"})
    front.start()
    yield front
    front.stop()


@pytest.fixture(scope="module")
def postfix(milter, next_hop) -> Iterator[PostfixInstance]:
    instance = PostfixInstance(port(14100), f"[127.0.0.1]:{next_hop.port}", milter_main(milter))
    with running(instance):
        yield instance


def mail_from_reply(smtpd_port: int) -> tuple[int, str]:
    """Postfix's answer to MAIL FROM (with no milter to ask, it refuses there)."""
    with smtplib.SMTP("127.0.0.1", smtpd_port, timeout=60,
                      source_address=(CLIENT_ADDRESS, 0)) as client:  # fmt: skip
        client.ehlo(CLIENT_HELO)
        code, text = client.mail("alice@example.test")
        return code, text.decode(errors="replace")


def delivered(hop: NextHop, marker: bytes) -> bytes:
    wait_for(lambda: hop.copies("bob@example.test", marker) == 1, 60, "the next hop's copy")
    return next(r.content for r in hop.received if marker in r.content)


def test_clean_mail_reaches_the_next_hop_with_our_headers_added(postfix, next_hop):
    marker = f"milter-clean-{time.time_ns()}"
    reply = send_via(postfix.port, make_message(X_Test_Id=marker))
    assert reply.code == 250, reply
    copy = delivered(next_hop, marker.encode())
    assert b"X-Virus-Status: Clean\r\n" in copy
    assert b"X-Spam-Flag: NO\r\n" in copy
    # Above the field of the same name a sender may have forged: ours come first.
    assert copy.index(b"X-Virus-Status:") < copy.index(b"Received:")
    assert "milter-reject" not in postfix.maillog()


def test_gtube_is_flagged_and_its_subject_tagged(postfix, next_hop):
    marker = f"milter-gtube-{time.time_ns()}"
    reply = send_via(postfix.port, make_message(body=GTUBE, X_Test_Id=marker, subject="Offer"))
    assert reply.code == 250, reply
    copy = delivered(next_hop, marker.encode())
    assert b"X-Spam-Flag: YES\r\n" in copy
    assert b"Subject: [SPAM] Offer\r\n" in copy


def test_eicar_is_refused_550_by_postfix_and_reaches_nobody(postfix, next_hop):
    marker = f"milter-eicar-{time.time_ns()}"
    reply = send_via(postfix.port, make_message(attachment=EICAR, X_Test_Id=marker))
    assert reply.code == 550, reply
    assert reply.text.startswith("5.7.1 Message refused: virus found")
    assert "EICAR" in reply.text.upper()
    assert postfix.queue() == []  # nothing queued: no delivery, no bounce
    assert "milter-reject: END-OF-MESSAGE" in postfix.maillog()
    assert not [r for r in next_hop.received if marker.encode() in r.content]


def test_with_mailscan_down_postfix_answers_4xx_and_the_retry_is_scanned(postfix, next_hop, milter):
    """milter_default_action = tempfail: the client keeps the mail and tries again; the
    try after mailscan is back is scanned and delivered, once."""
    marker = f"milter-down-{time.time_ns()}"
    milter.stop()
    try:
        code, text = mail_from_reply(postfix.port)
        assert (code, text) == (451, "4.7.1 Service unavailable - try again later")
        assert postfix.queue() == []
    finally:
        milter.start()
    assert send_via(postfix.port, make_message(X_Test_Id=marker)).code == 250
    copy = delivered(next_hop, marker.encode())
    assert b"X-Virus-Status: Clean\r\n" in copy
    time.sleep(1)  # a second copy would arrive at once
    assert next_hop.copies("bob@example.test", marker.encode()) == 1


@pytest.fixture(scope="module")
def slow_postfix(faults, fault_env, next_hop) -> Iterator[PostfixInstance]:
    """On the stack with the chaos plugin, whose slow scan outlasts this Postfix's
    milter_content_timeout (1 s, the shortest it takes)."""
    front = MilterFront("milter-slow", 5, base_env=fault_env)
    front.start()
    main = milter_main(front, milter_content_timeout="1s")
    try:
        with running(PostfixInstance(port(14102), f"[127.0.0.1]:{next_hop.port}", main)) as pf:
            yield pf
    finally:
        front.stop()


def test_progress_keeps_postfix_waiting_through_a_slow_scan(slow_postfix, next_hop):
    marker = f"milter-slow-{time.time_ns()}"
    reply = send_via(slow_postfix.port, make_message(body=f"MAILSCAN-CHAOS-SLOW {marker}"))
    assert reply.code == 250, reply
    copy = delivered(next_hop, marker.encode())
    assert b"X-Virus-Scanned: mailscan; chaos=clean" in copy
    assert "timeout" not in slow_postfix.maillog()


@pytest.fixture(scope="module")
def holding_postfix(stack, next_hop) -> Iterator[PostfixInstance]:
    """Through a Unix socket, to a milter that quarantines spam."""
    front = MilterFront("milter-hold", 6, unix=True, overrides={"spam_quarantine_score": "5"})
    front.start()
    try:
        main = milter_main(front)
        with running(PostfixInstance(port(14103), f"[127.0.0.1]:{next_hop.port}", main)) as pf:
            yield pf
    finally:
        front.stop()


def test_spam_over_the_quarantine_score_waits_in_postfixs_hold_queue(holding_postfix, next_hop):
    marker = f"milter-hold-{time.time_ns()}"
    reply = send_via(holding_postfix.port, make_message(body=GTUBE, X_Test_Id=marker))
    assert reply.code == 250, reply

    def held() -> list[dict]:
        return [m for m in holding_postfix.queue() if m["queue_name"] == "hold"]

    wait_for(lambda: len(held()) == 1, 30, "the message in Postfix's hold queue")
    assert next_hop.copies("bob@example.test", marker.encode()) == 0
