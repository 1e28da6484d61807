"""The spool entry is made durable while the message is scanned: nothing is confirmed or
delivered before it is, and an entry that cannot be made durable is a 451, never a delivery."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from mailserver.front.delivery import MaildirDelivery
from mailserver.front.pipeline import Pipeline
from mailserver.front.quarantine import Quarantine
from mailserver.front.redrive import Redriver
from mailserver.front.smtp import BROKER_AWAY, SPOOL_FAILED, ScanHandler
from mailserver.front.spool import Spool, SpoolEntry
from tasks.settings import load_settings
from tasks.wire.verdicts import ByPool
from tests.pool_verdicts import av_verdict, spam_verdict

CLEAN = {"av": av_verdict("clean"), "spam": spam_verdict("ham", 0.1)}


class ScannedPipeline(Pipeline):
    """The real pipeline with our own stand-in for the broker round trip: the scan takes
    ``scan_s`` and returns ``verdicts``, or raises ``scan_error``."""

    def __init__(self, root: Path, scan_s: float, scan_error: Exception | None = None):
        settings = load_settings({"MAILSCAN_VAR_DIR": str(root / "var")})
        spool, maildir = Spool(root / "spool"), MaildirDelivery(root / "maildir")
        super().__init__(settings, None, spool, None, None, maildir, Quarantine(root / "q"))
        self.scan_s, self.scan_error = scan_s, scan_error
        self.scans_ended = 0

    def backlog(self) -> tuple[int, float]:
        return 0, 0.0

    async def scan(self, entry: SpoolEntry, deadline_s: float, steps=None) -> ByPool:
        await asyncio.sleep(self.scan_s)
        self.scans_ended += 1
        if self.scan_error:
            raise self.scan_error
        return CLEAN


def _send(pipeline: ScannedPipeline, at_reply: Callable[[], None] = lambda: None) -> str:
    async def run() -> str:
        redriver = Redriver(pipeline.spool, pipeline, 60)
        handler = ScanHandler(pipeline, pipeline.spool, redriver, post_queue=False)
        session = SimpleNamespace(peer=("127.0.0.1", 2525), host_name="client.test", ssl=None)
        envelope = SimpleNamespace(
            mail_from="a@example.test", rcpt_tos=["b@example.test"],
            original_content=b"Subject: x\r\n\r\nhello\r\n", smtp_utf8=False,
        )  # fmt: skip
        reply = await hand_over(handler, session, envelope)
        at_reply()
        return reply

    reply = asyncio.run(run())
    assert pipeline.spool.drain(timeout_s=5)
    return reply


def _delivered(root: Path) -> list[Path]:
    new = root / "maildir" / "new"
    return list(new.iterdir()) if new.exists() else []


def _left_in_spool(root: Path) -> list[str]:
    return [p.name for folder in ("tmp", "queue") for p in (root / "spool" / folder).iterdir()]


def test_a_slow_disk_holds_delivery_and_reply_until_the_entry_is_durable(tmp_path, monkeypatch):
    pipeline = ScannedPipeline(tmp_path, scan_s=0.01)
    settle, deliver = pipeline.spool.settle, pipeline.delivery.deliver
    queue, seen = tmp_path / "spool" / "queue", []

    def slow_settle(entry_id: str) -> None:
        threading.Event().wait(0.3)  # the fsyncs wait for a busy disk, past the scan
        settle(entry_id)

    def deliver_and_look(entry_id: str, *args: Any, **kwargs: Any) -> Path | None:
        seen.append(("at delivery", (queue / entry_id).exists()))
        return deliver(entry_id, *args, **kwargs)

    monkeypatch.setattr(pipeline.spool, "settle", slow_settle)
    monkeypatch.setattr(pipeline.delivery, "deliver", deliver_and_look)
    reply = _send(pipeline, at_reply=lambda: seen.append(("at reply", len(_delivered(tmp_path)))))
    assert reply.startswith("250 2.0.0 Ok: delivered")
    assert seen == [("at delivery", True), ("at reply", 1)]
    assert _left_in_spool(tmp_path) == []


def test_an_entry_that_cannot_be_made_durable_is_refused_and_not_delivered(tmp_path, monkeypatch):
    pipeline = ScannedPipeline(tmp_path, scan_s=0.2)

    refused = []

    def failing_disk(entry_id: str) -> None:
        refused.append(entry_id)
        raise OSError(errno.EIO, "Input/output error")

    dropped = []
    monkeypatch.setattr(pipeline.spool, "settle", failing_disk)
    monkeypatch.setattr(pipeline.outcomes, "blob_done", dropped.append)
    assert _send(pipeline) == SPOOL_FAILED
    assert _delivered(tmp_path) == []
    assert _left_in_spool(tmp_path) == []  # the staged file goes too: nobody was told 250
    assert pipeline.scans_ended == 0  # the scan was called off, not waited for
    assert dropped == refused  # and the bytes its jobs would read leave Redis


def test_a_broker_gone_while_settling_is_a_451_with_nothing_left(tmp_path):
    pipeline = ScannedPipeline(tmp_path, scan_s=0.0, scan_error=RedisConnectionError("away"))
    assert _send(pipeline) == BROKER_AWAY
    assert _delivered(tmp_path) == []
    assert _left_in_spool(tmp_path) == []


def test_a_write_that_fails_half_way_leaves_nothing_and_scans_nothing(tmp_path, monkeypatch):
    pipeline = ScannedPipeline(tmp_path, scan_s=0.0)
    stage = pipeline.spool.stage

    def disk_full_after_the_header(envelope, content, entry_id):
        stage(envelope, b"", entry_id)  # a partial file is on disk when the error comes
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline.spool, "stage", disk_full_after_the_header)
    assert _send(pipeline) == SPOOL_FAILED
    assert pipeline.scans_ended == 0
    assert _left_in_spool(tmp_path) == []


async def hand_over(
    handler: ScanHandler, session: SimpleNamespace, envelope: SimpleNamespace
) -> str:
    """What the SMTP front does with the handler for one DATA command."""
    message = await handler.open_message(session, envelope)
    await message.write(envelope.original_content)
    return await handler.handle_DATA(None, session, envelope, message)
