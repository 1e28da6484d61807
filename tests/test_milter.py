"""The milter front's protocol, spoken by a client of ours over real sockets (TCP and Unix)
to ``mailscan milter`` on the real pools: negotiation, the events of a message and our
answers at its end, and whatever a broken or hostile MTA sends (the milter answers or
closes the connection, and keeps serving)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mailserver.milter import codec
from tests.conftest import EICAR, GTUBE, TEST_ROOT, make_message, wait_for
from tests.milter_client import MilterClient
from tests.milter_front import MilterFront

pytestmark = pytest.mark.integration

SMALL_LIMIT = 200_000


@pytest.fixture(scope="module")
def tcp_milter(stack) -> Iterator[MilterFront]:
    """Tags spam; with a policy that quarantines it for one domain only."""
    policy = TEST_ROOT / "milter-policy.toml"
    policy.write_text('[domain."strict.test"]\nspam_quarantine_score = 5\n')
    front = MilterFront("milter-tcp", 0, overrides={"spam_subject_tag": "[SPAM]",
                                                    "policy_file": str(policy)})  # fmt: skip
    front.start()
    yield front
    front.stop()


@pytest.fixture(scope="module")
def unix_milter(stack) -> Iterator[MilterFront]:
    """On a Unix socket; quarantines spam, and takes smaller messages."""
    front = MilterFront("milter-unix", 1, unix=True, overrides={
        "spam_quarantine_score": "5", "max_message_bytes": str(SMALL_LIMIT)})  # fmt: skip
    front.start()
    yield front
    front.stop()


def scan(front: MilterFront, raw: bytes, **negotiation: int):
    with MilterClient(front.where) as mta:
        mta.negotiate(**negotiation)
        mta.envelope()
        mta.message(raw)
        return mta.end()


def test_negotiation_agrees_on_protocol_6_header_actions_and_hold(tcp_milter):
    with MilterClient(tcp_milter.where) as mta:
        version, actions, steps = mta.negotiate()
    assert version == 6
    assert actions == codec.ADD_HEADERS | codec.CHANGE_HEADERS | codec.HOLD
    # The events it needs no reply to, the ones it needs not see, values as sent.
    for step in (codec.NR_CONNECT, codec.NR_RCPT, codec.NR_HEADER, codec.NR_BODY,
                 codec.NO_DATA, codec.HEADER_LEADING_SPACE):  # fmt: skip
        assert steps & step


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_clean_mail_is_accepted_with_our_headers_added_on_top(request, kind):
    front: MilterFront = request.getfixturevalue(f"{kind}_milter")
    replies = scan(front, make_message(X_Test_Id=f"milter-clean-{kind}").as_bytes())
    assert replies.final is not None
    assert replies.final.command == codec.ACCEPT
    assert {(e.command, e.header()[0]) for e in replies.edits} == {(codec.INSHEADER, 0)}, [
        e.header() for e in replies.edits
    ]
    fields = replies.headers()
    assert fields["X-Virus-Status"] == " Clean"
    assert fields["X-Spam-Flag"] == " NO"
    assert fields["X-Virus-Scanned"].startswith(" mailscan; clamav=clean")
    wait_for(lambda: front.spool_entries() == [], 10, "the spool entry to end")


def test_an_mta_with_fewer_steps_gets_a_reply_to_every_event(tcp_milter):
    """An MTA that offers no reply-less steps is answered CONTINUE each time (the client
    asserts it), and folded header values arrive without their leading space."""
    folded = b"X-Folded: first\r\n\tsecond\r\n" + make_message().as_bytes()
    replies = scan(tcp_milter, folded, actions=codec.ADD_HEADERS, steps=0)
    assert replies.final is not None
    assert replies.final.command == codec.ACCEPT
    assert replies.headers()["X-Virus-Status"] == "Clean"  # the MTA puts the space


def test_eicar_is_refused_550_naming_the_virus_and_nothing_is_kept(tcp_milter):
    replies = scan(tcp_milter, make_message(attachment=EICAR).as_bytes())
    assert replies.final is not None
    assert replies.final.command == codec.REPLYCODE
    assert replies.final.text.startswith("550 5.7.1 Message refused: virus found")
    assert "EICAR" in replies.final.text.upper()
    assert replies.edits == []
    wait_for(lambda: tcp_milter.spool_entries() == [], 10, "the spool entry to end")


def test_gtube_is_flagged_and_its_subject_tagged_by_a_header_change(tcp_milter):
    replies = scan(tcp_milter, make_message(body=GTUBE, subject="Cheap pills").as_bytes())
    assert replies.final is not None
    assert replies.final.command == codec.ACCEPT
    assert replies.headers()["X-Spam-Flag"] == " YES"
    changed = [e.header() for e in replies.edits if e.command == codec.CHGHEADER]
    assert changed == [(1, "Subject", " [SPAM] Cheap pills")]


def test_spam_over_the_quarantine_score_goes_to_the_mtas_hold_queue(unix_milter):
    replies = scan(unix_milter, make_message(body=GTUBE).as_bytes())
    assert replies.final is not None
    assert replies.final.command == codec.ACCEPT
    held = [e for e in replies.edits if e.command == codec.QUARANTINE]
    assert len(held) == 1
    assert "spam score" in held[0].text
    assert replies.headers()["X-Spam-Flag"] == " YES"


def test_recipients_under_different_policies_get_the_strictest_outcome(tcp_milter):
    """Postfix carries out one outcome per message: held for all when one domain's policy
    holds it."""
    with MilterClient(tcp_milter.where) as mta:
        mta.negotiate()
        mta.envelope(rcpts=("bob@example.test", "ann@strict.test"))
        mta.message(make_message(body=GTUBE).as_bytes())
        replies = mta.end()
    assert replies.final is not None
    assert replies.final.command == codec.ACCEPT
    held = [e for e in replies.edits if e.command == codec.QUARANTINE]
    assert len(held) == 1
    assert "spam score" in held[0].text


def test_a_message_over_the_size_limit_is_refused_552(unix_milter):
    big = make_message(body=("x" * 70 + "\n") * (SMALL_LIMIT // 70 + 10)).as_bytes()
    replies = scan(unix_milter, big)
    assert replies.final is not None
    assert replies.final.command == codec.REPLYCODE
    assert replies.final.text.startswith("552 ")


def test_an_aborted_message_is_forgotten_and_the_next_one_answered(tcp_milter):
    with MilterClient(tcp_milter.where) as mta:
        mta.negotiate()
        mta.envelope()
        mta.event(codec.HEADER, b"Subject\0 half a message\0")
        mta.send(codec.ABORT)
        mta.send(codec.QUIT_NC)  # another SMTP session on the same connection
        mta.envelope(rcpts=("carol@example.test",))
        mta.message(make_message(X_Test_Id="after-abort").as_bytes())
        replies = mta.end()
    assert replies.final is not None
    assert replies.final.command == codec.ACCEPT
    wait_for(lambda: tcp_milter.spool_entries() == [], 10, "the spool entry to end")


NEGOTIATE = codec.packet(codec.OPTNEG, struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
MALFORMED = {
    "zero length": b"\0\0\0\0",
    "oversized length": struct.pack(">I", 2**31) + b"B",
    "MAIL before OPTNEG": codec.packet(codec.MAIL, b"<a@example.test>\0"),
    "older protocol": codec.packet(codec.OPTNEG, struct.pack(">III", 2, 0x1FF, 0x7F)),
    "unknown command": NEGOTIATE + codec.packet(b"Z", b"?"),
    "string without NUL": NEGOTIATE + codec.packet(codec.HELO, b"no-terminator"),
    "RCPT before MAIL": NEGOTIATE + codec.packet(codec.RCPT, b"<b@example.test>\0"),
    "end without a message": NEGOTIATE + codec.packet(codec.EOB),
    "header without value": NEGOTIATE
    + codec.packet(codec.MAIL, b"<a@x.test>\0")
    + codec.packet(codec.HEADER, b"Subject\0"),
    "short OPTNEG": codec.packet(codec.OPTNEG, b"\0\0\0\6"),
}


def closes_after(where: tuple[str, int] | Path, data: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``data``, close our sending side, and read until the milter closes: what it
    said. A milter that neither answers nor closes fails here, by the timeout."""
    with MilterClient(where, timeout_s=timeout_s) as mta:
        mta.sock.sendall(data)
        mta.sock.shutdown(socket.SHUT_WR)
        said = b""
        while piece := mta.sock.recv(65536):
            said += piece
        return said


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_packet_closes_the_connection_and_the_milter_serves_on(tcp_milter, name):
    with MilterClient(tcp_milter.where, timeout_s=10) as mta:
        mta.sock.sendall(MALFORMED[name])
        deadline = time.monotonic() + 10
        while (reply := mta.read()) is not None:  # the OPTNEG reply, if one was asked for
            assert reply.command == codec.OPTNEG
            assert time.monotonic() < deadline
    with MilterClient(tcp_milter.where) as mta:
        assert mta.negotiate()[0] == 6
    assert tcp_milter.process is not None
    assert tcp_milter.process.poll() is None


def test_a_connection_closed_inside_a_packet_is_let_go(tcp_milter):
    assert closes_after(tcp_milter.where, NEGOTIATE + struct.pack(">I", 50) + b"H")[4:5] == b"O"
    assert tcp_milter.answers()


COMMANDS = [
    codec.MACRO, codec.CONNECT, codec.HELO, codec.MAIL, codec.RCPT, codec.HEADER, codec.EOH,
    codec.BODY, codec.ABORT, codec.QUIT_NC, codec.UNKNOWN, codec.DATA, b"Z",
]  # fmt: skip


@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    framed=st.lists(st.tuples(st.sampled_from(COMMANDS), st.binary(max_size=60)), max_size=12),
    tail=st.binary(max_size=40),
)
def test_garbage_is_answered_or_closed_never_a_crash_or_a_hang(tcp_milter, framed, tail):
    data = NEGOTIATE + b"".join(codec.packet(c, d) for c, d in framed) + tail
    closes_after(tcp_milter.where, data)
    assert tcp_milter.process is not None
    assert tcp_milter.process.poll() is None
    assert tcp_milter.answers()
