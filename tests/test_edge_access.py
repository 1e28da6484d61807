"""The SMTP front at its edge, end to end: fronts of their own on the session's Redis and
pools, spoken to byte for byte over a raw socket (smtplib refuses to send most of this).
Who may connect, for whom it takes mail, what a HELO may be and what our Received line
says, and what becomes of an address beyond ASCII, up to the next hop."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator

import pytest

from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tasks.wire.keys import SPOOL_REPORT_KEY
from tests.conftest import find_delivered, mailscan, make_message, port, wait_for
from tests.smtp_ends import NextHop, RawSession

pytestmark = pytest.mark.integration

REFUSED_CLIENT = b"554 5.7.1 "
RELAY_DENIED = b"554 5.7.1 Relay access denied"
NOT_UTF8 = b"553 5.6.7 "
# The front's relay domains: example.test alone, and every subdomain of sub.example.test.
RELAY_DOMAINS = "example.test,.sub.example.test"


def _front(stack: Stack, settings: Settings, name: str, n: int, **overrides: str) -> Iterator:
    env = {
        **os.environ,
        "MAILSCAN_VAR_DIR": str(settings.var_dir / name),
        "MAILSCAN_SMTP_PORT": str(port(12900) + n),
        "MAILSCAN_METRICS_PORT": str(port(19300) + n),
        "MAILSCAN_HOSTNAME": f"front-{name}",
        **{f"MAILSCAN_{key.upper()}": value for key, value in overrides.items()},
    }
    front_settings = load_settings(env)
    front = Stack(front_settings, env)
    front.start(["mailserver"], progress=lambda _: None)
    try:
        yield front_settings
    finally:
        front.stop()
        redisauth.connect(front_settings).hdel(SPOOL_REPORT_KEY, front_settings.hostname)


@pytest.fixture(scope="module")
def closed_front(stack, settings):
    """Loopback is outside its allow-list: to it, this test is a client from elsewhere."""
    yield from _front(stack, settings, "edge-closed", 0, smtp_allow_networks="10.0.0.0/8")


@pytest.fixture(scope="module")
def open_front(stack, settings):
    yield from _front(stack, settings, "edge-open", 1, smtp_allow_networks="127.0.0.1/32",
                      relay_domains=RELAY_DOMAINS)  # fmt: skip


@pytest.fixture(scope="module")
def next_hop() -> Iterator[NextHop]:
    with NextHop(port(12950)) as hop:
        yield hop


@pytest.fixture(scope="module")
def relay_front(stack, settings, next_hop):
    yield from _front(stack, settings, "edge-relay", 2, delivery="relay",
                      relay=f"127.0.0.1:{next_hop.port}")  # fmt: skip


def nothing_kept(front: Settings) -> bool:
    """No spool entry, no staging file, nothing delivered."""
    folders = [front.spool_dir / "queue", front.spool_dir / "tmp", front.maildir / "new"]
    return not any(any(folder.iterdir()) for folder in folders if folder.is_dir())


def settled(front: Settings) -> bool:
    folders = [front.spool_dir / "queue", front.spool_dir / "retry", front.spool_dir / "tmp"]
    return not any(any(folder.iterdir()) for folder in folders if folder.is_dir())


def message_bytes(marker: str, **headers: str) -> bytes:
    return make_message(X_Test_Id=marker, **headers).as_bytes().replace(b"\n", b"\r\n")


def our_received(delivered: bytes) -> str:
    """The first Received field of a delivered message (ours: it goes on top), unfolded."""
    found = re.search(rb"^Received: .*(?:\n[ \t].*)*", delivered, re.MULTILINE)
    assert found, delivered[:500]
    return re.sub(r"\r?\n[ \t]", " ", found.group(0).decode())


def first_bracketed(line: str) -> str:
    found = re.search(r"\[([^\]]*)\]", line)
    assert found, line
    return found.group(1)


def test_a_client_outside_the_allowed_networks_is_refused_before_the_greeting(closed_front):
    with RawSession(closed_front.smtp_port) as session:
        assert session.greeting.startswith(REFUSED_CLIENT), session.greeting
        for command in (b"EHLO client.example.test", b"MAIL FROM:<alice@example.test>",
                        b"RCPT TO:<bob@example.test>", b"DATA"):  # fmt: skip
            assert session.command(command).startswith(b"503 5.7.1"), command
        assert session.command(b"Subject: x").startswith(b"503 5.7.1")  # never DATA
        assert session.command(b"QUIT").startswith(b"221")
    assert nothing_kept(closed_front)


def test_a_refused_client_that_never_quits_is_let_go_after_a_few_commands(closed_front):
    with RawSession(closed_front.smtp_port, timeout_s=30) as session:
        answers = [session.command(b"NOOP") for _ in range(10)]
        rest = session.reader.read()  # what follows the tenth answer, to the end of the stream
    assert answers == [b"503 5.7.1 Access denied: only QUIT is taken\r\n"] * 10
    assert rest == b"421 4.7.0 Too many commands from a refused client, closing\r\n"


def test_a_client_inside_the_allowed_networks_is_served(open_front):
    with RawSession(open_front.smtp_port) as session:
        assert session.greeting.startswith(b"220 front-edge-open"), session.greeting
        assert session.command(b"EHLO client.example.test").startswith(b"250")
        assert session.command(b"MAIL FROM:<alice@example.test>").startswith(b"250")
        assert session.command(b"RCPT TO:<bob@example.test>").startswith(b"250")
        assert session.message(message_bytes("edge-inside")).startswith(b"250")
    assert len(find_delivered(open_front.maildir, b"edge-inside")) == 1


def test_recipients_outside_the_relay_domains_are_refused_at_rcpt(open_front):
    with RawSession(open_front.smtp_port) as session:
        session.command(b"EHLO client.example.test")
        session.command(b"MAIL FROM:<alice@example.test>")
        answers = {
            rcpt: session.command(b"RCPT TO:<%s>" % rcpt)
            for rcpt in (b"bob@example.test", b"carol@a.sub.example.test", b"eve@elsewhere.test",
                         b"dave@sub.example.test", b"mallory@example.test.elsewhere.test")
        }  # fmt: skip
        assert session.message(message_bytes("edge-relay-domains")).startswith(b"250")
    assert answers[b"bob@example.test"].startswith(b"250")
    assert answers[b"carol@a.sub.example.test"].startswith(b"250")
    for refused in (b"eve@elsewhere.test", b"dave@sub.example.test",
                    b"mallory@example.test.elsewhere.test"):  # fmt: skip
        assert answers[refused].startswith(RELAY_DENIED), (refused, answers[refused])
    assert len(find_delivered(open_front.maildir, b"edge-relay-domains")) == 1


def test_mail_for_refused_recipients_only_is_never_spooled(open_front):
    wait_for(lambda: settled(open_front), 30, "the mail of earlier tests to leave the spool")
    before = len(list((open_front.maildir / "new").iterdir()))
    with RawSession(open_front.smtp_port) as session:
        session.command(b"EHLO client.example.test")
        session.command(b"MAIL FROM:<alice@example.test>")
        assert session.command(b"RCPT TO:<eve@elsewhere.test>").startswith(RELAY_DENIED)
        assert session.message(message_bytes("edge-nobody")).startswith(b"503")
    assert settled(open_front)
    assert len(list((open_front.maildir / "new").iterdir())) == before


@pytest.mark.parametrize("verb", [b"HELO", b"EHLO"])
@pytest.mark.parametrize("name", [b"x ([10.9.8.7])", b"10.9.8.7", b"mx example", b"[1.2.3]"])
def test_a_helo_that_is_no_host_name_nor_address_literal_is_refused(open_front, verb, name):
    with RawSession(open_front.smtp_port) as session:
        refused = session.command(verb + b" " + name)
        assert refused == b"501 5.5.2 Syntax: %s hostname\r\n" % verb, refused
        assert session.command(b"MAIL FROM:<alice@example.test>").startswith(b"503")


@pytest.mark.parametrize(
    ("helo", "written"),
    [(b"[10.9.8.7]", "10.9.8.7"), (b"[IPv6:2001:db8::9]", "IPv6:2001:db8::9"),
     (b"mx.example.test", "mx.example.test")],
)  # fmt: skip
def test_our_received_line_names_the_real_peer_first_whatever_the_helo(open_front, helo, written):
    marker = f"edge-helo-{written}"
    with RawSession(open_front.smtp_port) as session:
        assert session.command(b"EHLO " + helo).startswith(b"250"), helo
        session.command(b"MAIL FROM:<alice@example.test>")
        session.command(b"RCPT TO:<bob@example.test>")
        assert session.message(message_bytes(marker)).startswith(b"250")
    [delivered] = find_delivered(open_front.maildir, marker.encode())
    line = our_received(delivered)
    assert first_bracketed(line) == "127.0.0.1", line
    assert line.startswith(f"Received: from {written} (unknown [127.0.0.1]) by front-edge-open ")


def test_a_non_ascii_address_without_smtputf8_is_refused_at_its_command(open_front):
    with RawSession(open_front.smtp_port) as session:
        session.command(b"EHLO client.example.test")
        sender = session.command("MAIL FROM:<jörg@example.test>".encode())
        assert sender.startswith(NOT_UTF8), sender
        assert session.command(b"MAIL FROM:<alice@example.test>").startswith(b"250")
        recipient = session.command("RCPT TO:<zoë@example.test>".encode())
        assert recipient.startswith(NOT_UTF8), recipient
        assert session.message(message_bytes("edge-no-utf8")).startswith(b"503")
    assert settled(open_front)
    assert not find_delivered(open_front.maildir, b"edge-no-utf8")


def test_control_characters_in_an_address_are_refused(open_front):
    with RawSession(open_front.smtp_port) as session:
        session.command(b"EHLO client.example.test")
        for sender in (b"a\x00b@example.test", b"a\rb@example.test"):
            reply = session.command(b"MAIL FROM:<" + sender + b"> SMTPUTF8")
            assert reply.startswith(b"553"), (sender, reply)


def test_a_non_ascii_address_with_smtputf8_is_taken_and_kept_as_sent(open_front):
    with RawSession(open_front.smtp_port) as session:
        session.command(b"EHLO client.example.test")
        assert session.command("MAIL FROM:<jörg@example.test> SMTPUTF8".encode()).startswith(b"250")
        assert session.command("RCPT TO:<zoë@example.test>".encode()).startswith(b"250")
        assert session.message(message_bytes("edge-utf8")).startswith(b"250")
    [delivered] = find_delivered(open_front.maildir, b"edge-utf8")
    assert delivered.startswith("Return-Path: <jörg@example.test>\n".encode())


def _relay(front: Settings, sender: str, rcpt: str, message: bytes) -> bytes:
    with RawSession(front.smtp_port) as session:
        session.command(b"EHLO client.example.test")
        assert session.command(f"MAIL FROM:<{sender}> SMTPUTF8".encode()).startswith(b"250")
        assert session.command(f"RCPT TO:<{rcpt}>".encode()).startswith(b"250")
        return session.message(message)


@pytest.fixture
def utf8_next_hop(next_hop):
    next_hop.offer_smtputf8(True)
    yield next_hop
    next_hop.offer_smtputf8(False)


def test_relay_passes_smtputf8_on_to_a_next_hop_that_offers_it(relay_front, utf8_next_hop):
    sent = [("jörg@example.test", "zoë@example.test", "edge-pass-utf8"),
            ("alice@example.test", "bob@example.test", "edge-pass-ascii")]  # fmt: skip
    for sender, rcpt, marker in sent:
        reply = _relay(relay_front, sender, rcpt, message_bytes(marker))
        assert reply.startswith(b"250"), reply
        [got] = [r for r in utf8_next_hop.received if marker.encode() in r.content]
        assert (got.mail_from, got.rcpt_tos) == (sender, [rcpt])
        assert "SMTPUTF8" in got.mail_options, got.mail_options
    wait_for(lambda: settled(relay_front), 10, "an empty spool")


def test_mail_that_needs_smtputf8_is_refused_cleanly_for_a_next_hop_without_it(
    relay_front, next_hop
):
    subject = {"subject": "Grüße aus Köln"}  # in the header as UTF-8, as SMTPUTF8 allows
    message = make_message(X_Test_Id="edge-needs-utf8", **subject)
    content = message.as_bytes(policy=message.policy.clone(utf8=True)).replace(b"\n", b"\r\n")
    assert "Grüße".encode() in content
    reply = _relay(relay_front, "alice@example.test", "bob@example.test", content)
    assert reply.startswith(b"550 5.0.0"), reply  # the client waits: it hears the refusal
    assert not [r for r in next_hop.received if b"edge-needs-utf8" in r.content]
    # An ASCII message sent under SMTPUTF8 goes on without it.
    assert _relay(relay_front, "alice@example.test", "bob@example.test",
                  message_bytes("edge-ascii-no-utf8")).startswith(b"250")  # fmt: skip
    [got] = [r for r in next_hop.received if b"edge-ascii-no-utf8" in r.content]
    assert "SMTPUTF8" not in got.mail_options
    wait_for(lambda: settled(relay_front), 10, "an empty spool")


def test_a_relaying_front_on_every_interface_without_an_allow_list_does_not_start(settings):
    smtp_port = port(12960)
    env = {**os.environ, "MAILSCAN_VAR_DIR": str(settings.var_dir / "edge-exposed"),
           "MAILSCAN_DELIVERY": "relay", "MAILSCAN_RELAY": "127.0.0.1:25",
           "MAILSCAN_SMTP_HOST": "0.0.0.0", "MAILSCAN_SMTP_PORT": str(smtp_port)}  # fmt: skip
    for command in (("serve",), ("check-config",)):
        result = mailscan(*command, env=env)
        assert result.returncode != 0, command
        [line] = result.stderr.strip().splitlines()
        assert "set MAILSCAN_SMTP_ALLOW_NETWORKS" in line, line
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", smtp_port), timeout=2).close()
