"""Virus first: a spam job whose message the av pool has already found infected (or with a
banned attachment) is answered without spamd.

A message with a virus or a banned attachment is refused (or quarantined) whatever its spam
score, and the SMTP front answers it as soon as the av verdict arrives
(mailserver/front/pipeline.py). Its spam job may still be waiting in the queue, behind other
mail in a virus outbreak: spamd's time, the
scarcest there is, would go to mail whose outcome is settled. The av verdict is read in the
job's first round trip, with the message itself, so a job that finds none costs nothing more.
"""

from __future__ import annotations

from tasks.guards.base import Guard, JobContext, Reads
from tasks.wire.jobids import sibling_job_id
from tasks.wire.keys import AV_POOL, RESULT_KEY_PREFIX, SPAM_POOL

AV_VERDICT = "virusfirst:av"
SKIPPED = "not scanned: the av pool found a virus"


class VirusFirstGuard(Guard):
    def plan_reads(self, job: JobContext, reads: Reads) -> None:
        av_job = _av_job_of(job)
        if av_job:
            reads.add(AV_VERDICT, "get", RESULT_KEY_PREFIX + av_job)

    def skip_job(self, job: JobContext) -> str | None:
        stored = job.reads.pop(AV_VERDICT, None)
        if stored is None or job.backend is None:
            return None
        meta = job.backend.decode(stored)
        result = meta.get("result") if isinstance(meta, dict) else None
        status = result.get("status") if isinstance(result, dict) else None
        # A recipient's policy may let the banned attachment through: its verdict still
        # needs the spam score.
        refused = status == "infected" or (status == "banned" and not job.ref.get("ban_may_pass"))
        return SKIPPED if refused else None


def _av_job_of(job: JobContext) -> str | None:
    """The id of the same message's av job, for a spam job whose id ``job_ids`` made; None
    for a job enqueued some other way (a test, a benchmark): it has no sibling."""
    if job.pool != SPAM_POOL:
        return None
    return sibling_job_id(job.job_id, AV_POOL)
