"""The essential front: what the design asks of any SMTP front in front of these pools, done
with mailscan's own parts and nothing more. Per message, as ``mailserver.pipeline`` orders it:

1. the spool entry written (``Spool.stage``), on a thread; then made durable (``settle``:
   fsync, rename, folder fsync) on another while steps 2 and 3 run;
2. the bytes and both scan jobs written in one round trip (``tasks.submit``), on a thread;
3. both verdicts awaited on the one shared subscriber (``mailserver.verdicts``), and the
   entry's durability;
4. the message delivered to the Maildir (``mailserver.delivery``), on a thread; then 250,
   and after it the Maildir's folder fsynced and the spool entry removed, in batches
   (``Spool.finish_soon``). Its bytes leave Redis in the next quarter second's
   round trip (``mailserver.outcomes.OutcomeLog.blob_done``): kept for the blob TTL, they
   would grow Redis's memory and its CPU with every message.

No admission check, scan headers, policy, outcome log, metrics, log line or redriver:
what mailscan's front costs above this is what those cost.

With ``BENCH_FLOOR_ONE_JOB`` set, step 2 enqueues only the av job, whose pool answers for
both (bench/floorapp.py).

    python -m bench.floorfront   (started by ``python -m bench.floor`` in place of the
                                  mailserver: port, Redis and folder from its MAILSCAN_*)
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import redis
import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.smtp_floor import serve_smtp
from mailserver.delivery import MaildirDelivery
from mailserver.outcomes import OutcomeLog
from mailserver.spool import Envelope as SpoolEnvelope
from mailserver.spool import Spool, SpoolEntry
from mailserver.verdicts import VerdictWaiter
from tasks import redisauth
from tasks.celeryapp import app
from tasks.constants import AV_POOL, POOLS
from tasks.settings import current_settings
from tasks.submit import job_ids, submit

VERDICT_WAIT_S = 60.0
BLOB_TTL_S = 600  # a backstop only: a finished message's bytes go at once (above)
ONE_JOB = bool(os.environ.get("BENCH_FLOOR_ONE_JOB"))
JOB_POOLS = (AV_POOL,) if ONE_JOB else POOLS  # the queues that get a job per message


class Essentials:
    """aiosmtpd handler doing the four steps above."""

    def __init__(self, root: Path, client: redis.Redis, waiter: VerdictWaiter) -> None:
        self.client, self.waiter = client, waiter
        self.spool, self.maildir = Spool(root / "spool"), MaildirDelivery(root / "maildir")
        self.finished = OutcomeLog(client)  # only its removal of finished messages' bytes

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sender = SpoolEnvelope(envelope.mail_from or "", tuple(envelope.rcpt_tos))
        content = envelope.original_content or b""
        entry = await asyncio.to_thread(self.spool.stage, sender, content)
        settling = asyncio.ensure_future(asyncio.to_thread(self.spool.settle, entry.id))
        task_ids = job_ids(entry.id)
        for task_id in task_ids.values():
            self.waiter.expect(task_id)
        await asyncio.to_thread(
            submit,
            app,
            self.client,
            entry.id,
            content,
            BLOB_TTL_S,
            task_ids=task_ids,
            pools=JOB_POOLS,
        )
        waits = [self.waiter.wait(task_id, VERDICT_WAIT_S) for task_id in task_ids.values()]
        await asyncio.gather(settling, *waits)
        await asyncio.to_thread(self._deliver, entry)
        return "250 OK"

    def _deliver(self, entry: SpoolEntry) -> None:
        unsynced = self.maildir.deliver(
            entry.id, entry.envelope, entry.content, first=True, defer_sync=True
        )
        self.spool.finish_soon(entry.id, unsynced)  # as mailscan's pipeline does
        self.finished.blob_done(entry.id)


async def serve() -> None:
    settings = current_settings()
    waiter = VerdictWaiter(redisauth.client_url(settings), app.backend.decode_result)
    await waiter.start()
    client = redisauth.connect(settings)
    handler = Essentials(settings.var_dir / "floor-front", client, waiter)
    remover = asyncio.create_task(handler.finished.run())
    await serve_smtp(handler, settings.smtp_port)
    remover.cancel()
    os._exit(0)  # no interpreter teardown: the stack stops this process, nothing is kept


if __name__ == "__main__":
    uvloop.run(serve())  # the event loop of mailscan's front (mailserver/cli.py)
