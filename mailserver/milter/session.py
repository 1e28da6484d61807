"""One MTA connection to the milter front: negotiation, then the events of each SMTP
session (connect, HELO, MAIL, RCPT, header fields, body chunks), and at the end of each
message the answer the pipeline decides.

A packet that is malformed, too large or out of place closes the connection, with one log
line: the MTA then applies its ``milter_default_action`` (``tempfail`` keeps the mail with
its sender). No exception ends the process or reaches the MTA.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mailserver.milter import codec
from mailserver.milter.codec import Client, Negotiated, Packet
from mailserver.milter.message import Message, envelope_address
from tasks.errors import MilterProtocolError

log = logging.getLogger(__name__)

# Far above anything Postfix sends (body chunks of 64 KiB, a header field of at most its
# header_size_limit, 100 KiB by default); a length past it is garbage, not a message.
MAX_PACKET_BYTES = 1024 * 1024
# Between two events the MTA waits for its SMTP client (Postfix: smtpd_timeout, 300 s by
# default, per command): three times that, and a silent peer is let go.
IDLE_TIMEOUT_S = 900.0

Send = Callable[[list[bytes]], Awaitable[None]]
Answer = Callable[[Message, dict[str, str], Send], Awaitable[None]]


class MilterSession:
    """``answer(message, macros, send)`` scans a whole message and sends the MTA its
    verdict with ``send``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        answer: Answer,
        max_message_bytes: int,
    ) -> None:
        self.reader, self.writer, self.answer = reader, writer, answer
        self.max_message_bytes = max_message_bytes
        self.negotiated = Negotiated(0, 0)
        self.macros: dict[str, str] = {}
        self.client = Client("unknown", "")
        self.helo = ""
        self.message: Message | None = None

    async def run(self) -> None:
        try:
            await self._converse()
        except MilterProtocolError as err:
            log.warning("milter connection closed: %s", err)
        except (ConnectionError, TimeoutError) as err:
            log.info("milter connection ended: %s", err or type(err).__name__)
        except Exception:
            log.exception("milter session failed; its connection is closed")
        finally:
            self.writer.close()

    async def send(self, packets: list[bytes]) -> None:
        self.writer.write(b"".join(packets))
        await self.writer.drain()

    async def _converse(self) -> None:
        first = await self._next()
        if first is None:
            return
        if first.command != codec.OPTNEG:
            raise MilterProtocolError(f"the MTA opened with {first.command!r}, not OPTNEG")
        self.negotiated, reply = codec.negotiate(first.data)
        await self.send([reply])
        while (packet := await self._next()) is not None:
            if packet.command == codec.QUIT:
                return
            await self._handle(packet)
            if packet.command in codec.NO_REPLY and self.negotiated.replies_to(packet.command):
                await self.send([codec.packet(codec.CONTINUE)])

    async def _next(self) -> Packet | None:
        return await asyncio.wait_for(
            codec.read_packet(self.reader, MAX_PACKET_BYTES), IDLE_TIMEOUT_S
        )

    async def _handle(self, packet: Packet) -> None:
        command, data = packet.command, packet.data
        if command == codec.EOB:
            await self._end_of_message(data)
        elif command in _ENVELOPE:
            _ENVELOPE[command](self, data)
        elif command in _CONTENT:
            _CONTENT[command](self._current(command), data)
        elif command in (codec.ABORT, codec.QUIT_NC):
            self._reset(connection=command == codec.QUIT_NC)
        elif command not in (codec.DATA, codec.UNKNOWN):
            raise MilterProtocolError(f"unknown or misplaced command {command!r}")

    def _current(self, command: bytes) -> Message:
        if self.message is None:
            raise MilterProtocolError(f"{command!r} outside a message (no MAIL before it)")
        return self.message

    async def _end_of_message(self, data: bytes) -> None:
        message = self._current(codec.EOB)
        if data:  # Sendmail may send the last chunk with the end; Postfix never does
            message.add_body(data)
        if not message.rcpt_tos:
            raise MilterProtocolError("end of a message without recipients")
        self.message = None
        await self.answer(message, dict(self.macros), self.send)

    def _reset(self, connection: bool) -> None:
        self.message = None
        if connection:  # QUIT_NC: the connection is kept for another SMTP session
            self.macros, self.client, self.helo = {}, Client("unknown", ""), ""

    def _on_macro(self, data: bytes) -> None:
        self.macros.update(codec.macros(data))

    def _on_connect(self, data: bytes) -> None:
        self.client = codec.client(data)

    def _on_helo(self, data: bytes) -> None:
        self.helo = codec.text(codec.strings(data)[0])

    def _on_mail(self, data: bytes) -> None:
        sender, *options = codec.strings(data)
        self.message = Message(
            self.client,
            self.helo,
            envelope_address(sender),
            self.max_message_bytes,
            self.negotiated,
            smtputf8=any(option.upper() == b"SMTPUTF8" for option in options),
        )

    def _on_rcpt(self, data: bytes) -> None:
        recipient = codec.strings(data)[0]
        self._current(codec.RCPT).rcpt_tos.append(envelope_address(recipient))


def _on_header(message: Message, data: bytes) -> None:
    message.add_header(*codec.header(data))


def _on_eoh(message: Message, _: bytes) -> None:
    message.end_headers()


_ENVELOPE: dict[bytes, Callable[[MilterSession, bytes], None]] = {
    codec.MACRO: MilterSession._on_macro,
    codec.CONNECT: MilterSession._on_connect,
    codec.HELO: MilterSession._on_helo,
    codec.MAIL: MilterSession._on_mail,
    codec.RCPT: MilterSession._on_rcpt,
}
_CONTENT: dict[bytes, Callable[[Message, bytes], None]] = {
    codec.HEADER: _on_header,
    codec.EOH: _on_eoh,
    codec.BODY: Message.add_body,
}
