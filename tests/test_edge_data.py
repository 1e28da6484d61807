"""The DATA phase at the edge, against the real front: what a hostile or broken client sends
is refused with a clear reply, the front keeps serving everyone else, a slow sender that
keeps sending finishes, and many big messages at once cost bounded memory."""

from __future__ import annotations

import os
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver.supervisor.stack import Stack
from tasks.settings import Settings, load_settings
from tests.conftest import CORPUS, find_delivered, make_message, on_the_wire, send
from tests.raw_client import RawClient

pytestmark = pytest.mark.integration

BARE_NEWLINE = b"550 5.6.0 Message refused: bare CR or LF\r\n"


def spooled(settings: Settings, marker: bytes) -> list[Path]:
    """Spool files, staged or settled, that hold ``marker``."""
    folders = (settings.spool_dir / "tmp", settings.spool_dir / "queue")
    return [p for f in folders for p in f.iterdir() if p.is_file() and marker in p.read_bytes()]


@pytest.mark.parametrize("smuggled_end", [b"\n.\n", b"\n.\r\n", b"\r\n.\n"])
def test_a_message_smuggled_behind_a_bare_line_end_is_never_a_second_message(
    stack, settings, smuggled_end
):
    marker = f"smuggled-{time.time_ns()}".encode()
    first = b"Subject: one\r\nX-Test-Id: " + marker + b"-first\r\n\r\nfirst body"
    second = (
        b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"Subject: two\r\nX-Test-Id: " + marker + b"-second\r\n\r\nforged\r\n.\r\n"
    )
    with RawClient(settings.smtp_port) as client:
        client.start_data()
        client.send(first + smuggled_end + second)
        # One reply for all of it: the smuggled MAIL, RCPT and DATA were data, not commands.
        assert client.reply() == BARE_NEWLINE
        assert client.command(b"QUIT").startswith(b"221")
    assert find_delivered(settings.maildir, marker) == []
    assert spooled(settings, marker) == []


def test_a_bare_cr_is_refused_after_the_whole_message_and_the_session_goes_on(stack, settings):
    marker = f"bare-cr-{time.time_ns()}".encode()
    with RawClient(settings.smtp_port) as client:
        client.start_data()
        client.send(b"Subject: x\r\nX-Test-Id: " + marker + b"\r\n\r\nold\rmac\r\n.\r\n")
        assert client.reply() == BARE_NEWLINE
        client.start_data()  # the same session, a proper message
        client.send(b"Subject: y\r\nX-Test-Id: " + marker + b"-ok\r\n\r\nfine\r\n.\r\n")
        assert client.reply().startswith(b"250 2.0.0")
    assert len(find_delivered(settings.maildir, marker)) == 1


def test_a_line_past_its_bound_is_refused_while_the_front_serves_another_client(stack, settings):
    marker = f"long-line-{time.time_ns()}".encode()
    with RawClient(settings.smtp_port) as client:
        client.start_data()
        client.send(b"Subject: x\r\nX-Test-Id: " + marker + b"\r\n\r\n")
        client.send(b"y" * (settings.smtp_max_line_bytes // 2))  # half of the line so far
        other = send(make_message(X_Test_Id=marker.decode() + "-other"), settings.smtp_port)
        assert other.code == 250, other  # served while the long line is on its way
        client.send(b"y" * settings.smtp_max_line_bytes + b"\r\nend\r\n.\r\n")
        reply = client.reply()
        assert reply.startswith(b"552 5.3.4 Message refused: a line is longer than"), reply
        assert client.command(b"NOOP").startswith(b"250")
    assert len(find_delivered(settings.maildir, marker)) == 1  # the other client's
    assert spooled(settings, marker) == []


def test_a_header_section_past_its_bound_is_refused(stack, settings):
    marker = f"big-header-{time.time_ns()}".encode()
    filler = b"X-Filler: " + b"h" * 990 + b"\r\n"
    header = filler * (settings.smtp_max_header_bytes // len(filler) + 1)
    with RawClient(settings.smtp_port) as client:
        client.start_data()
        client.send(b"X-Test-Id: " + marker + b"\r\n" + header + b"\r\nbody\r\n.\r\n")
        reply = client.reply()
        assert reply.startswith(b"552 5.3.4 Message refused: header section larger"), reply
    assert spooled(settings, marker) == []


def test_a_command_line_past_the_stream_buffer_is_refused_and_the_session_goes_on(stack, settings):
    with RawClient(settings.smtp_port) as client:
        assert client.command(b"EHLO " + b"h" * 200_000).startswith(b"500 ")
        assert client.command(b"NOOP").startswith(b"250")


def test_real_mail_passes_as_an_mta_sends_it(stack, settings):
    # The SpamAssassin corpus, with CRLF line ends as on the wire: none is refused.
    messages = sorted(CORPUS.glob("*/*.eml"))
    assert messages
    refused = []
    with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=120) as client:
        client.ehlo("client.example.test")
        for path in messages:
            client.mail("alice@example.test")
            client.rcpt("bob@example.test")
            code, text = client.data(on_the_wire(path.read_bytes()))
            if code != 250:
                refused.append((path.name, code, text))
    assert refused == []


# A second front on the same Redis and pools, whose DATA clock runs fast.
IDLE_S, MIN_RATE = 1.0, 200


@pytest.fixture(scope="module")
def slow_clock_front(stack, settings) -> Iterator[Settings]:
    env = {
        **os.environ,
        "MAILSCAN_SMTP_PORT": str(settings.smtp_port + 6),
        "MAILSCAN_METRICS_PORT": str(settings.metrics_port + 16),
        "MAILSCAN_VAR_DIR": str(settings.var_dir / "edge-data"),
        "MAILSCAN_SMTP_DATA_IDLE_TIMEOUT_S": str(IDLE_S),
        "MAILSCAN_SMTP_DATA_MIN_RATE_BYTES_PER_S": str(MIN_RATE),
    }
    front = Stack(load_settings(env), env)
    front.start(["mailserver"], progress=lambda _: None)
    yield front.settings
    front.stop()


def test_a_stalled_sender_gets_421_and_is_disconnected(slow_clock_front):
    settings = slow_clock_front
    with RawClient(settings.smtp_port, timeout_s=30) as client:
        client.start_data()
        client.send(b"Subject: stalled\r\n\r\nand then noth")
        started = time.monotonic()
        reply = client.reply()  # waits for the front: no sleep of ours
        took_s = time.monotonic() - started
        assert reply.startswith(b"421 4.4.2 "), reply
        assert client.reply() == b""  # and the connection is closed
    assert IDLE_S * 0.9 < took_s < IDLE_S + 5
    assert list((settings.spool_dir / "tmp").iterdir()) == []


def _send_slowly(client: RawClient, data: bytes, piece: int, gap_s: float) -> bytes:
    """Send ``data`` a ``piece`` at a time, ``gap_s`` apart, as a slow line does; the reply
    if the front answered (and hung up) before the end, else b""."""
    for start in range(0, len(data), piece):
        if client.answered_within(gap_s):
            return client.reply()  # the client hears the front before it sends on
        client.send(data[start : start + piece])
    return b""


def test_a_slow_steady_sender_finishes_long_after_the_idle_timeout(slow_clock_front):
    settings = slow_clock_front
    marker = f"steady-{time.time_ns()}".encode()
    message = on_the_wire(make_message(body="slow but steady " * 100, X_Test_Id=marker.decode()))
    started = time.monotonic()
    with RawClient(settings.smtp_port, timeout_s=30) as client:
        client.start_data()
        # 2.5 times the minimum rate, with gaps of a third of the idle timeout.
        assert _send_slowly(client, message, int(MIN_RATE * 2.5 * IDLE_S / 3), IDLE_S / 3) == b""
        client.send(b".\r\n")
        assert client.reply().startswith(b"250 2.0.0"), client.replies
    assert time.monotonic() - started > 3 * IDLE_S  # the phase outlived the idle timeout
    assert len(find_delivered(settings.maildir, marker)) == 1


def test_a_trickle_below_the_minimum_rate_gets_421_though_never_silent_long(slow_clock_front):
    settings = slow_clock_front
    with RawClient(settings.smtp_port, timeout_s=30) as client:
        client.start_data()
        started = time.monotonic()
        # One byte every fifth of the idle timeout: never silent for long, but 5 bytes/s.
        reply = _send_slowly(client, b"x" * 500, 1, IDLE_S / 5)
        took_s = time.monotonic() - started
        assert reply.startswith(b"421 4.4.2 "), client.replies
    assert took_s < IDLE_S * 10
