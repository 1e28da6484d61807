"""One message's final outcome, as the message log keeps it: who sent what to whom from
where, what each engine said, what was decided and by which policy, how long each step
took, and where the message went. Plain data, written as one JSON object."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tasks.wire.verdicts import ByPool

# The content verdicts a search can ask for ("banned": an attachment the banned engine refused);
# "failed": no verdict from a pool (scan failed, or the message was never scanned).
VERDICTS = ("clean", "spam", "virus", "banned", "failed")


@dataclass(frozen=True)
class RecipientOutcome:
    """What became of the message for one recipient."""

    address: str
    outcome: str  # delivered, quarantined, refused, tempfail, dead-letter
    detail: str = ""


@dataclass(frozen=True)
class MessageRecord:
    """A final outcome. ``reply``: what a waiting client heard ("" when none waited);
    ``steps_ms``: milliseconds per step where known (spool, queue.POOL, scan.POOL,
    scan.POOL.ENGINE, delivery or quarantine); ``verdicts``: each pool's verdict record as
    the pools store it (tasks/wire/verdicts.py), None for a pool that gave none."""

    at: float
    spool_id: str
    mail_from: str
    recipients: tuple[RecipientOutcome, ...]
    verdict: str
    action: str
    reason: str
    reply: str = ""
    message_id: str = ""
    client_ip: str = ""
    helo: str = ""
    subject: str = ""
    size: int = 0
    policy: str = ""
    verdicts: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    steps_ms: dict[str, float] = field(default_factory=dict)
    next_hop: str = ""
    quarantine: str = ""
    crashdumps: tuple[str, ...] = ()
    # Unique per record: a batch written twice (the writer died between the database's
    # commit and forgetting the batch) is stored once.
    record_id: str = field(default_factory=lambda: secrets.token_hex(16))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageRecord:
        """Keys it does not know (a newer version's) are ignored."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in known}
        kept["recipients"] = tuple(RecipientOutcome(**r) for r in data.get("recipients", ()))
        kept["crashdumps"] = tuple(data.get("crashdumps", ()))
        return cls(**kept)

    def rules(self) -> list[str]:
        """The spam rules that hit, from every engine that named some."""
        return [rule for engine in self._engines() for rule in engine.get("rules") or ()]

    def _engines(self) -> list[dict[str, Any]]:
        return [e for v in self.verdicts.values() if v for e in v.get("verdicts") or ()]


def content_verdict(results: ByPool) -> str:
    """One word for what the scans found; "failed" when a pool gave no verdict."""
    av, spam = results.get("av"), results.get("spam")
    if av is not None and av.status == "infected":
        return "virus"
    if av is not None and av.status == "banned":
        return "banned"
    if spam is not None and spam.status == "spam":
        return "spam"
    if any(v is None or v.status == "error" for v in (av, spam)):
        return "failed"
    return "clean"


def scan_steps(results: ByPool) -> dict[str, float]:
    """Each pool's and each engine's own time, as the pools measured it."""
    steps: dict[str, float] = {}
    for pool, verdict in results.items():
        if verdict is None or verdict.reason is not None:  # none, or the front's own
            continue
        steps[f"scan.{pool}"] = round(verdict.elapsed_ms, 1)
        for engine in verdict.engines:
            steps[f"scan.{pool}.{engine.engine}"] = round(engine.elapsed_ms, 1)
    return steps
