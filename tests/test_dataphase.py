"""The DATA phase reader, fed through a real asyncio StreamReader, its checks and its clock,
and the SMTP front's DATA command through a real smtplib client."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller

from mailserver.front.datachecks import BARE_NEWLINE, TOO_BIG, DataChecks, DataRules
from mailserver.front.dataclock import DataClock
from mailserver.front.dataphase import read_data
from mailserver.front.smtpsession import LenientSMTP

RULES = DataRules(max_line_bytes=1000, max_header_bytes=2000)


@dataclass
class Kept:
    """Our own sink: what read_data handed on, in the pieces it handed it."""

    pieces: list[bytes] = field(default_factory=list)
    discarded: bool = False

    async def write(self, data: bytes) -> None:
        self.pieces.append(bytes(data))

    async def discard(self) -> None:
        self.discarded = True

    @property
    def content(self) -> bytes:
        return b"".join(self.pieces)


def read(
    wire: bytes, size_limit: int | None = None, buffer_limit: int = 2**16, rules: DataRules = RULES
) -> tuple[str, bytes, bytes]:
    """(the refusal, the message kept, what stayed in the stream for the next command)."""

    async def run() -> tuple[str, bytes, bytes]:
        reader = asyncio.StreamReader(limit=buffer_limit)
        reader.feed_data(wire)
        reader.feed_eof()
        kept = Kept()
        refusal = await read_data(reader, kept, DataChecks(rules, size_limit), None)
        return refusal, kept.content, await reader.read()

    return asyncio.run(run())


def test_message_ends_at_the_lone_dot_and_the_next_command_stays_in_the_stream():
    assert read(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n") == (
        "",
        b"Subject: x\r\n\r\nbody\r\n",
        b"QUIT\r\n",
    )


def test_empty_message_and_one_line_message():
    assert read(b".\r\nQUIT\r\n") == ("", b"", b"QUIT\r\n")
    assert read(b"a\r\n.\r\n") == ("", b"a\r\n", b"")


def test_lines_ending_in_a_dot_are_content():
    assert read(b"Regards.\r\nSee you.\r\n.\r\n")[1] == b"Regards.\r\nSee you.\r\n"


def test_dot_stuffing_is_undone():
    # The client doubles a leading dot (RFC 5321 4.5.2); a line of one dot is sent as "..".
    wire = b"..\r\n..hidden\r\nplain\r\n...two\r\n.\r\n"
    assert read(wire)[1] == b".\r\n.hidden\r\nplain\r\n..two\r\n"


@pytest.mark.parametrize(
    "smuggled_end", [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r\r\n"]
)
def test_a_dot_between_bare_line_ends_never_ends_the_data_and_the_message_is_refused(
    smuggled_end,
):
    second = b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
    wire = b"Subject: one\r\n\r\nbody" + smuggled_end + second + b"forged\r\n.\r\nQUIT\r\n"
    refusal, kept, rest = read(wire)
    assert refusal == BARE_NEWLINE
    assert rest == b"QUIT\r\n"  # the smuggled commands were read as data, not as commands
    assert b"MAIL FROM" not in kept  # nothing of it kept past the bare line end


@pytest.mark.parametrize("bare", [b"a\nb", b"a\rb", b"\n", b"\r", b"\r\r\n", b"x\r\n\n"])
def test_a_bare_cr_or_lf_anywhere_is_refused(bare):
    assert read(b"Subject: x\r\n\r\n" + bare + b"\r\n.\r\n")[0] == BARE_NEWLINE
    assert read(bare + b"\r\n.\r\n")[0] == BARE_NEWLINE


def test_line_end_checks_hold_wherever_the_pieces_are_cut():
    # Stream buffers of every small size cut the data at every offset, a CRLF included.
    good = b"Subject: x\r\n\r\n" + b"".join(b"line %d.\r\n" % n for n in range(30))
    bad = good[:50] + b"\n" + good[50:]
    for limit in range(8, 64):
        assert read(good + b".\r\nQUIT\r\n", buffer_limit=limit) == ("", good, b"QUIT\r\n")
        assert read(bad + b".\r\nQUIT\r\n", buffer_limit=limit)[::2] == (BARE_NEWLINE, b"QUIT\r\n")


def test_a_line_at_the_bound_passes_and_one_byte_more_is_refused_wherever_cut():
    at_bound = b"x" * 998 + b"\r\n"  # 1000 bytes, its CRLF included
    for limit in (64, 333, 2**16):
        message = b"Subject: x\r\n\r\n" + at_bound + b"short\r\n" + at_bound
        assert read(message + b".\r\n", buffer_limit=limit)[0] == ""
        refusal = read(b"Subject: x\r\n\r\ny" + at_bound + b".\r\nQUIT\r\n", buffer_limit=limit)
        assert refusal[0].startswith("552 5.3.4 ")
        assert "line" in refusal[0]
        assert refusal[2] == b"QUIT\r\n"


def test_many_short_lines_make_a_long_message_but_no_long_line():
    message = b"Subject: x\r\n\r\n" + b"short line\r\n" * 20_000
    assert read(message + b".\r\n", buffer_limit=4096)[:2] == ("", message)


def test_a_header_section_past_its_bound_is_refused_and_a_big_body_is_not():
    header = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"v" * 60) for n in range(40))  # 2.8 KB
    refusal, kept, rest = read(header + b"\r\nbody\r\n.\r\nQUIT\r\n", buffer_limit=256)
    assert refusal.startswith("552 5.3.4 ")
    assert "header" in refusal
    assert len(kept) <= 2000 + 256  # nothing kept past the bound
    assert rest == b"QUIT\r\n"
    small_header = header[:1500] + b"X-Last: 1\r\n"
    body = b"b" * 500 + b"\r\n"
    assert read(small_header + b"\r\n" + body * 100 + b".\r\n", buffer_limit=256)[0] == ""


def test_a_message_without_header_lines_passes():
    assert read(b"\r\nonly a body\r\n.\r\n")[:2] == ("", b"\r\nonly a body\r\n")


def test_message_larger_than_the_stream_buffer_is_handed_on_in_pieces_as_it_arrives():
    body = b"Subject: long\r\n\r\n" + b"".join(b"line %06d of it\r\n" % n for n in range(5000))
    wire = body + b".\r\nQUIT\r\n"

    async def arrive(reader: asyncio.StreamReader) -> None:
        for start in range(0, len(wire), 512):  # as a socket delivers it: piece by piece
            reader.feed_data(wire[start : start + 512])
            await asyncio.sleep(0)
        reader.feed_eof()

    async def run() -> tuple[Kept, bytes]:
        reader, kept = asyncio.StreamReader(limit=1024), Kept()
        arriving = asyncio.create_task(arrive(reader))
        assert await read_data(reader, kept, DataChecks(RULES, None), None) == ""
        await arriving
        return kept, await reader.read()

    kept, rest = asyncio.run(run())
    assert kept.content == body
    assert rest == b"QUIT\r\n"
    # The session holds a piece at a time, never much more than the stream's buffer.
    assert len(kept.pieces) > len(body) // (2 * 1024)
    assert max(map(len, kept.pieces)) <= 2 * 1024


def test_pieces_cut_anywhere_give_the_same_message():
    body = b"..stuffed\r\nends in a dot.\r\n\r\n..\r\nx" + b"y" * 40 + b"\r\n"
    expected = body.replace(b"\r\n..", b"\r\n.").removeprefix(b".")
    for limit in range(8, 64):
        assert read(body + b".\r\nQUIT\r\n", buffer_limit=limit) == ("", expected, b"QUIT\r\n")


def test_over_the_size_limit_the_message_is_dropped_but_the_stream_stays_in_step():
    body = b"x" * 500 + b"\r\n"
    refusal, kept, rest = read(body * 10 + b".\r\nQUIT\r\n", size_limit=1000, buffer_limit=256)
    assert refusal == TOO_BIG
    assert len(kept) <= 1000 + 256  # nothing kept past the limit
    assert rest == b"QUIT\r\n"


def test_exactly_at_the_size_limit_is_accepted():
    body = b"y" * 98 + b"\r\n"
    assert read(body + b".\r\n", size_limit=100)[:2] == ("", body)


class FakeLoop:
    """A loop clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def time(self) -> float:
        return self.now


def test_the_clock_gives_credit_per_byte_up_to_the_idle_timeout():
    loop = FakeLoop()
    clock = DataClock(DataRules(idle_timeout_s=10, min_rate_bytes_per_s=100), loop)  # type: ignore[arg-type]
    assert clock.expires_at() == 110
    loop.now += 4
    clock.arrived(200)  # 2 s of credit for 200 bytes, on top of the 6 left
    assert clock.expires_at() == pytest.approx(104 + 8)
    clock.arrived(100_000)  # a burst banks no more than the idle timeout
    assert clock.expires_at() == pytest.approx(104 + 10)
    for _ in range(100):  # steady at the minimum rate: never runs out
        loop.now += 1
        clock.arrived(100)
    assert clock.expires_at() == pytest.approx(loop.now + 10)
    for _ in range(18):  # at half the rate it runs out, one half second per second
        loop.now += 1
        clock.arrived(50)
    assert not clock.expired()
    loop.now = clock.expires_at()
    assert clock.expired()


async def _feed(reader: asyncio.StreamReader, clock: DataClock, pieces: list[bytes], gap_s: float):
    """A client on a slow line: ``pieces`` one after another, ``gap_s`` apart."""
    for piece in pieces:
        await asyncio.sleep(gap_s)
        clock.arrived(len(piece))  # as LenientSMTP.data_received does
        reader.feed_data(piece)


def _read_slowly(pieces: list[bytes], gap_s: float, rules: DataRules) -> tuple[str, float]:
    async def run() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        reader, kept = asyncio.StreamReader(limit=2**16), Kept()
        clock = DataClock(rules, loop)
        feeding = asyncio.create_task(_feed(reader, clock, pieces, gap_s))
        started = loop.time()
        try:
            return await read_data(reader, kept, DataChecks(rules, None), clock), 0.0
        except TimeoutError:
            return "timed out", loop.time() - started
        finally:
            feeding.cancel()

    return asyncio.run(run())


def test_a_steady_sender_finishes_long_after_the_idle_timeout():
    # 30 pieces 0.05 s apart without a line end among them: a piece of the reader never
    # completes before the end, yet every byte moves the clock on.
    rules = DataRules(idle_timeout_s=0.3, min_rate_bytes_per_s=100)
    pieces = [b"x" * 20] * 30 + [b"\r\n.\r\n"]
    assert _read_slowly(pieces, 0.05, rules) == ("", 0.0)


def test_a_silent_sender_times_out_after_the_idle_timeout():
    rules = DataRules(idle_timeout_s=0.3, min_rate_bytes_per_s=100)
    refusal, took_s = _read_slowly([b"Subject: x\r\n", b"never ends"], 5.0, rules)
    assert refusal == "timed out"
    assert 0.25 < took_s < 2.0


def test_a_trickle_below_the_minimum_rate_times_out_though_never_silent_long():
    # One byte every 0.05 s is 20 bytes a second, a fifth of the minimum: the credit goes.
    rules = DataRules(idle_timeout_s=0.5, min_rate_bytes_per_s=100)
    refusal, took_s = _read_slowly([b"x"] * 200, 0.05, rules)
    assert refusal == "timed out"
    assert 0.5 < took_s < 3.0


class Keep:
    """Our own handler for LenientSMTP: keeps each message whole."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def open_message(self, session, envelope) -> Kept:
        return Kept()

    async def handle_DATA(self, server, session, envelope, message: Kept) -> str:
        self.messages.append(message.content)
        return "250 2.0.0 Ok"


@pytest.fixture
def smtp_front():
    handler = Keep()

    class Front(Controller):
        def factory(self):
            return LenientSMTP(self.handler, data_size_limit=10_000, hostname="test")

    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Front(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def test_smtp_client_messages_arrive_byte_for_byte(smtp_front):
    handler, port = smtp_front
    message = b"Subject: dots\r\n\r\n.leading dot\r\nend.\r\n..\r\n\r\n"
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("a@example.org", ["b@example.org"], message)
        client.sendmail("a@example.org", ["b@example.org"], b"Subject: second\r\n\r\nx\r\n")
    assert handler.messages == [message, b"Subject: second\r\n\r\nx\r\n"]


def test_smtp_client_hears_552_for_too_much_data_and_can_go_on(smtp_front):
    handler, port = smtp_front
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        client.mail("a@example.org")  # no SIZE=: the limit is found only in DATA
        client.rcpt("b@example.org")
        assert client.data(b"z" * 20_000) == (552, TOO_BIG[4:].encode())
        client.sendmail("a@example.org", ["b@example.org"], b"Subject: small\r\n\r\nok\r\n")
    assert handler.messages == [b"Subject: small\r\n\r\nok\r\n"]


def test_data_before_rcpt_is_refused(smtp_front):
    _, port = smtp_front
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        client.mail("a@example.org")
        assert client.docmd("DATA")[0] == 503


def test_a_client_gone_in_the_middle_of_data_delivers_nothing_and_the_server_goes_on(smtp_front):
    handler, port = smtp_front
    with socket.create_connection(("127.0.0.1", port)) as raw:
        reader = raw.makefile("rb")
        reader.readline()  # greeting
        for command in (b"HELO client\r\n", b"MAIL FROM:<a@example.org>\r\n"):
            raw.sendall(command)
            reader.readline()
        raw.sendall(b"RCPT TO:<b@example.org>\r\n")
        reader.readline()
        raw.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        raw.sendall(b"Subject: cut short\r\n\r\nhalf a mess")
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("a@example.org", ["b@example.org"], b"Subject: next\r\n\r\nwhole\r\n")
    assert handler.messages == [b"Subject: next\r\n\r\nwhole\r\n"]
