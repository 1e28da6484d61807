"""A spool entry's life is bounded, end to end: real SMTP in, the real pools, a real next hop
on loopback (aiosmtpd). Whatever the trigger, the message ends delivered, dead-lettered or
set aside within its bounds, scanned once, with the spool and the Maildir's tmp/ empty."""

from __future__ import annotations

import json
import os
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver.front.spool import new_id
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tasks.wire.keys import RESULT_KEY_PREFIX, SPOOL_REPORT_KEY
from tests.conftest import (
    GTUBE,
    find_delivered,
    mailscan,
    make_message,
    on_the_wire,
    port,
    send,
    wait_for,
)
from tests.smtp_ends import NextHop, RawSession, raw_smtp

pytestmark = pytest.mark.integration

RETRY_S = "0.3"  # MAILSCAN_DELIVERY_RETRY_S of the fronts here: attempts follow fast


def _front(stack: Stack, settings: Settings, name: str, n: int, **overrides: str) -> Iterator:
    """A further SMTP front of its own (folders, ports, host name) on the stack's Redis and
    pools: a front is all these settings change."""
    env = {
        **os.environ,
        "MAILSCAN_VAR_DIR": str(settings.var_dir / name),
        "MAILSCAN_SMTP_PORT": str(port(12700) + n),
        "MAILSCAN_METRICS_PORT": str(port(19200) + n),
        "MAILSCAN_HOSTNAME": f"front-{name}",
        "MAILSCAN_DELIVERY_RETRY_S": RETRY_S,
        **{f"MAILSCAN_{key.upper()}": value for key, value in overrides.items()},
    }
    front_settings = load_settings(env)
    front = Stack(front_settings, env)
    front.start(["mailserver"], progress=lambda _: None)
    try:
        yield front_settings, env
    finally:
        front.stop()
        # Gone with its front: its spool (and the alarm of its dead letters) is not the
        # stack's, for the tests of the status and the spool alarm that follow.
        redisauth.connect(front_settings).hdel(SPOOL_REPORT_KEY, front_settings.hostname)


@pytest.fixture(scope="module")
def next_hop() -> Iterator[NextHop]:
    with NextHop(port(12800)) as hop:
        yield hop


@pytest.fixture(scope="module")
def maildir_front(stack, settings):
    """Maildir delivery, pre-queue, and a subject tag with a backslash in it."""
    yield from _front(stack, settings, "life-maildir", 0, spam_subject_tag=r"[SP\AM \1]")


@pytest.fixture(scope="module")
def relay_front(stack, settings, next_hop):
    yield from _front(stack, settings, "life-relay", 1, delivery="relay",
                      relay=f"127.0.0.1:{next_hop.port}")  # fmt: skip


@pytest.fixture(scope="module")
def post_relay_front(stack, settings, next_hop):
    yield from _front(stack, settings, "life-post", 2, delivery="relay", mode="post-queue",
                      relay=f"127.0.0.1:{next_hop.port}")  # fmt: skip


@pytest.fixture(scope="module")
def short_life_front(stack, settings, next_hop):
    yield from _front(stack, settings, "life-short", 3, delivery="relay", mode="post-queue",
                      relay=f"127.0.0.1:{next_hop.port}", spool_max_lifetime_s="4")  # fmt: skip


def settled(front: Settings) -> bool:
    """Nothing left in the spool nor in the Maildir's staging folder."""
    folders = [front.spool_dir / "queue", front.spool_dir / "retry", front.maildir / "tmp"]
    return not any(any(folder.iterdir()) for folder in folders if folder.is_dir())


def scan_jobs(settings: Settings, entry_id: str) -> int:
    """The scan jobs the pools ran for a message: each left its result in Redis."""
    client = redisauth.connect(settings)
    return len(list(client.scan_iter(f"{RESULT_KEY_PREFIX}{entry_id}-*")))


def queued_id(reply_text: str) -> str:
    return reply_text.rsplit(" ", 1)[-1]


def test_an_8bit_sender_without_smtputf8_is_refused_at_mail_not_left_in_the_spool(maildir_front):
    front, _ = maildir_front
    with RawSession(front.smtp_port) as session:
        session.command(b"EHLO client.example.test")
        refused = session.command(b"MAIL FROM:<al\xffce@example.test>")
        assert refused.startswith(b"553 5.6.7"), refused
        assert session.command(b"RCPT TO:<bob@example.test>").startswith(b"503"), "no sender"
        assert session.message(b"Subject: x\r\n\r\neight-bit\r\n").startswith(b"503")
    assert not find_delivered(front.maildir, b"eight-bit")
    assert settled(front)


def test_a_subject_tag_with_a_backslash_is_put_in_front_as_written(maildir_front):
    front, _ = maildir_front
    reply = send(make_message(GTUBE, subject="offer", X_Test_Id="tagged"), front.smtp_port)
    assert reply.code == 250, reply
    [delivered] = find_delivered(front.maildir, b"tagged")
    assert b"Subject: [SP\\AM \\1] offer" in delivered
    wait_for(lambda: settled(front), 10, "an empty spool and Maildir tmp/")


def test_a_corrupt_spool_entry_is_set_aside_at_once_with_an_alarm(maildir_front):
    front, env = maildir_front
    entry_id = new_id()
    (front.spool_dir / "queue" / entry_id).write_bytes(b"{not an envelope\nSubject: x\r\n\r\n")
    corrupt = front.spool_dir / "corrupt"
    wait_for(lambda: (corrupt / entry_id).exists(), 10, "the entry in corrupt/")
    assert "envelope" in json.loads((corrupt / f"{entry_id}.json").read_text())["reason"]
    assert settled(front)

    def alarm_shown() -> bool:
        status = mailscan("status", env=env).stdout
        return any("ALARM" in line and "corrupt" in line for line in status.splitlines())

    wait_for(alarm_shown, 20, "the alarm in mailscan status")
    metrics = _scrape(front.metrics_port)
    assert "mailscan_spool_corrupt_entries 1.0" in metrics


def test_a_partial_refusal_is_250_and_the_refused_recipient_dead_lettered_with_a_dsn(
    relay_front, next_hop
):
    front, _ = relay_front
    next_hop.refuse["nobody@example.test"] = "550 5.1.1 No such user"
    message = make_message(X_Test_Id="partial-550")
    reply = send(message, front.smtp_port, ["bob@example.test", "nobody@example.test"])
    assert reply.code == 250, reply
    entry_id = queued_id(reply.text)
    assert next_hop.copies("bob@example.test", b"partial-550") == 1
    record = json.loads((front.spool_dir / "dead" / f"{entry_id}.json").read_text())
    assert list(record["failed"]) == ["nobody@example.test"]
    assert record["delivered"] == ["bob@example.test"]
    wait_for(lambda: next_hop.dsns(b"partial-550"), 10, "the DSN")
    [dsn] = next_hop.dsns(b"partial-550")
    assert dsn.rcpt_tos == ["alice@example.test"]
    assert b"multipart/report; report-type=delivery-status" in dsn.content
    assert b"Final-Recipient: rfc822; nobody@example.test" in dsn.content
    assert b"Status: 5.1.1" in dsn.content
    wait_for(lambda: settled(front), 10, "an empty spool")


def test_a_recipient_refused_for_now_alone_gets_the_message_later(relay_front, next_hop):
    front, _ = relay_front
    next_hop.refuse["later@example.test"] = "450 4.2.1 Mailbox busy"
    reply = send(make_message(X_Test_Id="partial-450"), front.smtp_port,
                 ["bob@example.test", "later@example.test"])  # fmt: skip
    assert reply.code == 250, reply
    entry_id = queued_id(reply.text)
    retry = front.spool_dir / "retry" / f"{entry_id}.json"
    wait_for(retry.exists, 10, "the kept verdicts")
    del next_hop.refuse["later@example.test"]
    wait_for(lambda: next_hop.copies("later@example.test", b"partial-450"), 20, "the retry")
    wait_for(lambda: settled(front), 10, "an empty spool")
    assert next_hop.copies("bob@example.test", b"partial-450") == 1
    assert next_hop.copies("later@example.test", b"partial-450") == 1
    assert scan_jobs(front, entry_id) == 2  # one av and one spam job: no rescan


def test_a_utf8_recipient_a_next_hop_without_smtputf8_cannot_take_is_dead_lettered(
    relay_front, next_hop
):
    front, _ = relay_front
    message = make_message(X_Test_Id="utf8-rcpt").as_bytes().replace(b"\n", b"\r\n")
    rcpts = (b"bob@example.test", "jörg@example.test".encode())
    replies = raw_smtp(front.smtp_port, b"alice@example.test", message, rcpts, b" SMTPUTF8")
    assert replies[-1].startswith(b"250"), replies
    entry_id = queued_id(replies[-1].decode().strip())
    assert next_hop.copies("bob@example.test", b"utf8-rcpt") == 1
    record = json.loads((front.spool_dir / "dead" / f"{entry_id}.json").read_text())
    [(refused, why)] = record["failed"].items()
    assert refused == "jörg@example.test"
    assert why.startswith("553 5.6.7")
    wait_for(lambda: next_hop.dsns(b"utf8-rcpt"), 10, "the DSN")
    wait_for(lambda: settled(front), 10, "an empty spool")


def test_mail_for_a_next_hop_that_is_down_is_delivered_once_it_is_back_scanned_once(
    post_relay_front, next_hop
):
    front, _ = post_relay_front
    next_hop.stop()
    try:
        reply = send(make_message(X_Test_Id="hop-down"), front.smtp_port)
        assert reply.code == 250, reply
        entry_id = queued_id(reply.text)
        retry = front.spool_dir / "retry" / f"{entry_id}.json"
        wait_for(lambda: _attempts(retry) >= 3, 30, "three failed attempts")
    finally:
        next_hop.start()
    wait_for(lambda: next_hop.copies("bob@example.test", b"hop-down"), 30, "the delivery")
    wait_for(lambda: settled(front), 10, "an empty spool")
    assert next_hop.copies("bob@example.test", b"hop-down") == 1
    assert scan_jobs(front, entry_id) == 2  # one av and one spam job: no rescan


def test_past_its_lifetime_a_message_is_dead_lettered_with_a_dsn_but_never_to_an_empty_sender(
    short_life_front, next_hop
):
    front, _ = short_life_front
    next_hop.refuse["stuck@example.test"] = "451 4.3.0 Try again later"
    bounced = send(make_message(X_Test_Id="expired-dsn"), front.smtp_port, ["stuck@example.test"])
    assert bounced.code == 250, bounced
    silent = _send_from_empty_sender(make_message(X_Test_Id="expired-quiet"), front.smtp_port)
    dead = front.spool_dir / "dead"
    for entry_id in (queued_id(bounced.text), queued_id(silent)):
        wait_for(lambda e=entry_id: (dead / f"{e}.json").exists(), 30, "the dead letter")
        record = json.loads((dead / f"{entry_id}.json").read_text())
        assert record["reason"] == "no final outcome within the spool's lifetime"
        assert record["failed"]["stuck@example.test"].startswith("554 5.4.7")
        assert (dead / entry_id).exists()
    [dsn] = next_hop.dsns(b"expired-dsn")
    assert dsn.rcpt_tos == ["alice@example.test"]
    assert b"Status: 5.4.7" in dsn.content
    assert next_hop.dsns(b"expired-quiet") == []
    wait_for(lambda: settled(front), 10, "an empty spool")


def _send_from_empty_sender(message, port_: int) -> str:
    with smtplib.SMTP("127.0.0.1", port_, timeout=60) as client:
        client.ehlo("client.example.test")
        client.mail("")
        client.rcpt("stuck@example.test")
        code, text = client.data(on_the_wire(message))
    assert code == 250, text
    return text.decode()


def _attempts(retry: Path) -> int:
    try:
        return json.loads(retry.read_text())["attempts"]
    except (OSError, ValueError):
        return 0


def _scrape(metrics_port: int) -> str:
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()
