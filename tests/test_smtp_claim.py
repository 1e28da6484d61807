"""A message an SMTP session is scanning is never driven by the redriver at the same time:
the session claims the spool id before the file appears in the spool."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from mailserver.front.membudget import MemoryBudget
from mailserver.front.redrive import Redriver
from mailserver.front.smtp import ScanHandler
from mailserver.front.spool import Spool, SpoolEntry
from mailserver.front.staging import FLUSH_BYTES


class CountingPipeline:
    """Our own stand-in for the scan pipeline: counts how often each entry is processed."""

    settings = SimpleNamespace(scan_deadline_s=30.0, max_queued_jobs=1000)

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.memory = MemoryBudget(2**20, unmetered_bytes=FLUSH_BYTES)
        self.processed: list[str] = []
        self.logged: list = []  # the message log's records
        self.messages = SimpleNamespace(record=self.logged.append)

    def backlog(self) -> tuple[int, float]:
        return 0, 0.0

    async def process(self, entry: SpoolEntry, client_waiting: bool, settling=None, steps=None):
        self.processed.append(entry.id)
        if settling is not None:
            await settling  # as the real pipeline: nothing is decided before it is durable
        await asyncio.sleep(0.05)  # the scan takes a while: room for a second driver
        self.spool.finish(entry.id)
        return SimpleNamespace(reply="250 2.0.0 Ok", action="deliver", reason="clean")


def test_redriver_leaves_alone_an_entry_whose_session_is_scanning_it(tmp_path):
    async def run() -> list[str]:
        spool = Spool(tmp_path)
        pipeline = CountingPipeline(spool)
        redriver = Redriver(spool, pipeline, interval_s=60)
        handler = ScanHandler(pipeline, spool, redriver, post_queue=False)
        settle = spool.settle

        def settle_then_redrive(entry_id: str) -> None:
            settle(entry_id)
            # The redriver's periodic listing finds the new file before the session goes on.
            asyncio.run_coroutine_threadsafe(_redrive_pending(redriver, spool), loop)

        loop = asyncio.get_running_loop()
        spool.settle = settle_then_redrive
        session = SimpleNamespace(peer=("127.0.0.1", 2525), host_name="client.test", ssl=None)
        envelope = SimpleNamespace(
            mail_from="a@example.test",
            rcpt_tos=["b@example.test"],
            original_content=b"x",
            smtp_utf8=False,
        )
        reply = await hand_over(handler, session, envelope)
        await asyncio.sleep(0.2)
        assert reply.startswith("250")
        return pipeline.processed

    processed = asyncio.run(run())
    assert len(processed) == 1


async def _redrive_pending(redriver: Redriver, spool: Spool) -> None:
    for entry_id in spool.pending():
        redriver.submit(entry_id)


@pytest.mark.parametrize("post_queue", [False, True])
def test_a_spool_that_cannot_write_answers_451_and_scans_nothing(tmp_path, post_queue):
    from mailserver.front.smtp import SPOOL_FAILED

    async def run() -> tuple[str, list[str], list]:
        spool = Spool(tmp_path)

        def full_disk(*_):
            raise OSError(28, "No space left on device")

        spool.commit = spool.stage = full_disk
        pipeline = CountingPipeline(spool)
        handler = ScanHandler(pipeline, spool, Redriver(spool, pipeline, 60), post_queue)
        session = SimpleNamespace(peer=("127.0.0.1", 2525), host_name="client.test", ssl=None)
        envelope = SimpleNamespace(
            mail_from="a@example.test",
            rcpt_tos=["b@example.test"],
            original_content=b"x",
            smtp_utf8=False,
        )
        return await hand_over(handler, session, envelope), pipeline.processed, pipeline.logged

    reply, processed, logged = asyncio.run(run())
    assert reply == SPOOL_FAILED
    assert processed == []
    # The 451 is a final outcome: the message log has it, with its reason.
    assert [(r.reply, r.reason) for r in logged] == [
        (SPOOL_FAILED, "the spool could not keep the message")
    ]


async def hand_over(
    handler: ScanHandler, session: SimpleNamespace, envelope: SimpleNamespace
) -> str:
    """What the SMTP front does with the handler for one DATA command."""
    message = await handler.open_message(session, envelope)
    await message.write(envelope.original_content)
    return await handler.handle_DATA(None, session, envelope, message)
