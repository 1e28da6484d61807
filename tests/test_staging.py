"""A message written into the spool while its DATA arrives: whole in its entry's file, in
memory only while small, and gone without a trace when it is discarded."""

from __future__ import annotations

import asyncio
import errno

from mailserver.front.spool import Envelope, Spool
from mailserver.front.staging import FLUSH_BYTES, StagedMessage
from tasks.wire.spoolfile import read_entry

ENVELOPE = Envelope("a@example.test", ("b@example.test",), "127.0.0.1", "client.test")


def _stage(spool: Spool, pieces: list[bytes]) -> tuple[StagedMessage, bool, bytes]:
    async def run() -> tuple[StagedMessage, bool, bytes]:
        message = StagedMessage(spool, "0" * 24, ENVELOPE)
        for piece in pieces:
            await message.write(piece)
        closed = await message.close()
        return message, closed, (await message.content()) if closed else b""

    return asyncio.run(run())


def test_a_small_message_is_one_file_and_stays_in_memory(tmp_path):
    spool = Spool(tmp_path)
    message, closed, content = _stage(spool, [b"Subject: x\r\n", b"\r\n", b"hello\r\n"])
    assert closed
    assert content == b"Subject: x\r\n\r\nhello\r\n"
    assert message._kept == content  # no read back
    spool.settle(message.id)
    assert spool.load(message.id).envelope == ENVELOPE
    assert spool.load(message.id).content == content


def test_a_big_message_is_written_as_it_comes_and_read_back_from_its_file(tmp_path):
    spool = Spool(tmp_path)
    piece = b"x" * 76 + b"\r\n"
    pieces = [piece] * (3 * FLUSH_BYTES // len(piece))
    written: list[int] = []

    async def run() -> tuple[StagedMessage, bytes]:
        message = StagedMessage(spool, "1" * 24, ENVELOPE)
        path = spool.tmp / message.id
        for piece_ in pieces:
            await message.write(piece_)
            written.append(path.stat().st_size if path.exists() else 0)
            assert len(message._buffer) < FLUSH_BYTES  # the session's memory: one buffer
        assert await message.close()
        return message, await message.content()

    message, content = asyncio.run(run())
    assert content == b"".join(pieces)
    assert message._kept is None
    assert 0 < written[len(pieces) // 2] < len(content)  # on disk before the data ended
    header, stored = read_entry(spool.tmp / message.id)
    assert stored == content
    assert b"a@example.test" in header


def test_a_discarded_message_leaves_nothing(tmp_path):
    spool = Spool(tmp_path)

    async def run() -> None:
        message = StagedMessage(spool, "2" * 24, ENVELOPE)
        await message.write(b"y" * (2 * FLUSH_BYTES))
        assert (spool.tmp / message.id).exists()
        await message.discard()

    asyncio.run(run())
    assert list(spool.tmp.iterdir()) == []


def test_a_full_disk_fails_the_message_and_it_keeps_draining(tmp_path, monkeypatch):
    spool = Spool(tmp_path)

    def full_disk(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool, "open_staged", full_disk)

    async def run() -> tuple[bool, bool]:
        message = StagedMessage(spool, "3" * 24, ENVELOPE)
        for _ in range(4):
            await message.write(b"z" * FLUSH_BYTES)  # no error reaches the reader
        closed = await message.close()
        await message.discard()
        return message.failed, closed

    assert asyncio.run(run()) == (True, False)
    assert list(spool.tmp.iterdir()) == []
