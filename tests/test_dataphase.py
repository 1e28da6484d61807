"""The DATA phase reader, fed through a real asyncio StreamReader, and the SMTP front's
DATA command through a real smtplib client."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import tracemalloc

import pytest
from aiosmtpd.controller import Controller

from mailserver.front.dataphase import DataRead, read_data
from mailserver.front.server import LenientSMTP


def read(wire: bytes, size_limit: int | None = None, buffer_limit: int = 2**16):
    """What read_data makes of ``wire``, and what it left in the stream for the next command."""

    async def run() -> tuple[DataRead, bytes]:
        reader = asyncio.StreamReader(limit=buffer_limit)
        reader.feed_data(wire)
        reader.feed_eof()
        result = await read_data(reader, size_limit)
        return result, await reader.read()

    return asyncio.run(run())


def test_message_ends_at_the_lone_dot_and_the_next_command_stays_in_the_stream():
    result, rest = read(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert result.content == b"Subject: x\r\n\r\nbody\r\n"
    assert rest == b"QUIT\r\n"


def test_empty_message_and_one_line_message():
    assert read(b".\r\nQUIT\r\n") == (DataRead(b""), b"QUIT\r\n")
    assert read(b"a\r\n.\r\n") == (DataRead(b"a\r\n"), b"")


def test_lines_ending_in_a_dot_are_content():
    wire = b"Regards.\r\nSee you.\r\n.\r\n"
    assert read(wire)[0].content == b"Regards.\r\nSee you.\r\n"


def test_dot_stuffing_is_undone():
    # The client doubles a leading dot (RFC 5321 4.5.2); a line of one dot is sent as "..".
    wire = b"..\r\n..hidden\r\nplain\r\n...two\r\n.\r\n"
    assert read(wire)[0].content == b".\r\n.hidden\r\nplain\r\n..two\r\n"


def test_bare_line_feeds_and_a_dot_after_them_are_not_the_end():
    wire = b"one\n.\ntwo\r\n.\r\n"
    assert read(wire)[0].content == b"one\n.\ntwo\r\n"


def test_message_larger_than_the_stream_buffer_is_read_whole():
    body = b"".join(b"line %06d of a long message\r\n" % n for n in range(5000))
    result, rest = read(body + b".\r\nQUIT\r\n", buffer_limit=1024)
    assert result.content == body
    assert rest == b"QUIT\r\n"


def test_a_big_message_is_in_memory_once_while_it_is_read():
    message = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * (20 * 1024 * 1024 // 78)

    async def arrive(reader: asyncio.StreamReader, wire: memoryview) -> None:
        for start in range(0, len(wire), 2**16):  # as a socket delivers it: piece by piece
            reader.feed_data(wire[start : start + 2**16])
            await asyncio.sleep(0)
        reader.feed_eof()

    async def peak_of_reading() -> tuple[DataRead, int]:
        reader = asyncio.StreamReader(limit=2**16)
        wire = memoryview(message + b".\r\n")
        tracemalloc.start()
        try:
            arriving = asyncio.create_task(arrive(reader, wire))
            result = await read_data(reader, None)
            await arriving
            return result, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    result, peak = asyncio.run(peak_of_reading())
    assert result.content == message
    # Its pieces kept apart and then joined, it was there twice: 40 MiB.
    assert peak < len(message) * 1.3, f"peak {peak / 2**20:.1f} MiB for a 20 MiB message"


def test_pieces_cut_anywhere_give_the_same_message():
    # Stream buffers of every small size cut the data at every offset, the terminator and
    # the CRLF before it included: the message and the rest of the stream are the same.
    body = b"..stuffed\r\nends in a dot.\r\n\r\n..\r\nx" + b"y" * 40 + b"\r\n"
    expected = body.replace(b"\r\n..", b"\r\n.").removeprefix(b".")
    for limit in range(8, 64):
        result, rest = read(body + b".\r\nQUIT\r\n", buffer_limit=limit)
        assert (result.content, rest) == (expected, b"QUIT\r\n"), limit


def test_over_the_size_limit_the_message_is_dropped_but_the_stream_stays_in_step():
    body = b"x" * 5000 + b"\r\n"
    result, rest = read(body + b".\r\nQUIT\r\n", size_limit=1000, buffer_limit=256)
    assert result.too_big
    assert result.content == b""
    assert rest == b"QUIT\r\n"


def test_exactly_at_the_size_limit_is_accepted():
    body = b"y" * 98 + b"\r\n"
    assert read(body + b".\r\n", size_limit=100)[0] == DataRead(body)


class Keep:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope.original_content)
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
        assert client.data(b"z" * 20_000)[0] == 552
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
