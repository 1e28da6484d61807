"""The verdict record: what one engine said about a message (``EngineVerdict``) and what a
pool said, all its engines together (``PoolVerdict``).

Over the wire and on disk a verdict is a plain record (str, number, bool, None, list and
dict: msgpack and JSON carry it), the one the pools have always stored through Celery's
result backend:

    {"pool", "status", "verdicts": [engine records], "unscannable", "elapsed_ms", "worker",
     "spool_unreadable"}, an engine record being {"engine", "status", "virus", "score",
     "threshold", "rules", "detail", "elapsed_ms", "unscannable"}, and "part" on a
     ``banned`` engine record: the attachment it refused (its rule is in "rules"); the
     ``banned`` engine also writes "names" (file names it saw), "names_cut" and
     "banned_by_name" when they say something; "scanned_bytes" and "message_bytes" on the
     record of an engine given the head of the message alone (spamassassin, over
     ``MAILSCAN_SPAM_MAX_BYTES``).

``to_record`` writes exactly that, so fronts and pools of the version before this one read
what these write; ``from_record`` reads it back, ignoring keys it does not know (those of a
newer version) and taking the default for keys a record lacks. A record without a pool or a
status, or not shaped like one at all, raises ValueError. The decode is per verdict, two per
message, so it checks the shape and nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# ``banned``: an attachment matched a banned-attachment rule (av pool, the ``banned`` engine).
Status = Literal["clean", "infected", "banned", "ham", "spam", "skipped", "error"]
_SHAPE_ERRORS = (KeyError, TypeError, AttributeError, ValueError)


@dataclass(frozen=True)
class EngineVerdict:
    """What one engine said about one message."""

    engine: str
    status: Status
    virus: str | None = None
    score: float | None = None
    threshold: float | None = None
    rules: tuple[str, ...] = ()
    detail: str = ""
    elapsed_ms: float = 0.0
    # Set when the message was given up after killing or freezing this engine too often.
    unscannable: bool = False
    # The banned attachment (archive members after a slash), on a ``banned`` verdict.
    part: str | None = None
    # The ``banned`` engine's file names: for each extension it saw, the first attachment or
    # archive member path that has it, in the order seen; a policy section's own extension
    # list judges them again. ``names_cut``: there were more than a verdict carries.
    names: tuple[str, ...] = ()
    names_cut: bool = False
    # The ban rests on file names alone (an extension of the global list), so a section's
    # own list may undo it; any other ban (a type, encryption, a bound) stands for all.
    banned_by_name: bool = False
    # Set when the engine was given the head of the message alone: how much of how much.
    scanned_bytes: int | None = None
    message_bytes: int | None = None

    @property
    def truncated(self) -> bool:
        return self.scanned_bytes is not None

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "engine": self.engine,
            "status": self.status,
            "virus": self.virus,
            "score": self.score,
            "threshold": self.threshold,
            "rules": list(self.rules),
            "detail": self.detail,
            "elapsed_ms": self.elapsed_ms,
            "unscannable": self.unscannable,
        }
        if self.part is not None:
            record["part"] = self.part
        if self.truncated:
            record["scanned_bytes"] = self.scanned_bytes
            record["message_bytes"] = self.message_bytes
        if self.names:
            record["names"] = list(self.names)
        if self.names_cut:
            record["names_cut"] = True
        if self.banned_by_name:
            record["banned_by_name"] = True
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> EngineVerdict:
        try:
            return cls(
                engine=record["engine"],
                status=record["status"],
                virus=record.get("virus"),
                score=record.get("score"),
                threshold=record.get("threshold"),
                rules=tuple(record.get("rules") or ()),
                detail=record.get("detail") or "",
                elapsed_ms=record.get("elapsed_ms") or 0.0,
                unscannable=bool(record.get("unscannable")),
                part=record.get("part"),
                scanned_bytes=record.get("scanned_bytes"),
                message_bytes=record.get("message_bytes"),
                names=tuple(record.get("names") or ()),
                names_cut=bool(record.get("names_cut")),
                banned_by_name=bool(record.get("banned_by_name")),
            )
        except _SHAPE_ERRORS as err:
            raise ValueError(f"not an engine verdict: {err!r}") from err


@dataclass(frozen=True)
class PoolVerdict:
    """What a pool said about one message: the status its engines give together, each
    engine's verdict, and which worker answered. ``reason`` is set on a verdict the front
    makes itself, without a job (a spam verdict not waited for)."""

    pool: str
    status: Status
    engines: tuple[EngineVerdict, ...] = ()
    unscannable: bool = False
    elapsed_ms: float = 0.0
    # Which worker answered is part of the verdict: tests and operators can see that the
    # av and spam jobs of one message really ran in different pools.
    worker: str = ""
    # The job could not read the message from the spool: the front sends it through Redis.
    spool_unreadable: bool = False
    reason: str | None = None

    def virus_names(self) -> list[str]:
        return [engine.virus for engine in self.engines if engine.virus]

    def banned_engine(self) -> EngineVerdict | None:
        """The engine verdict that names a banned attachment, if any."""
        return next((engine for engine in self.engines if engine.status == "banned"), None)

    def first_engine(self) -> EngineVerdict | None:
        return self.engines[0] if self.engines else None

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "pool": self.pool,
            "status": self.status,
            "verdicts": [engine.to_record() for engine in self.engines],
        }
        if self.reason is not None:
            # The front's own verdict: no job ran, and its record has only ever said why.
            record["reason"] = self.reason
            return record
        record["unscannable"] = self.unscannable
        record["elapsed_ms"] = self.elapsed_ms
        record["worker"] = self.worker
        record["spool_unreadable"] = self.spool_unreadable
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PoolVerdict:
        try:
            return cls(
                pool=record["pool"],
                status=record["status"],
                engines=tuple(EngineVerdict.from_record(v) for v in record.get("verdicts") or ()),
                unscannable=bool(record.get("unscannable")),
                elapsed_ms=record.get("elapsed_ms") or 0.0,
                worker=record.get("worker") or "",
                spool_unreadable=bool(record.get("spool_unreadable")),
                reason=record.get("reason"),
            )
        except _SHAPE_ERRORS as err:
            raise ValueError(f"not a pool verdict: {err!r}") from err


# A message's verdicts by pool name ("av", "spam"); None for a pool that gave none in time.
ByPool = dict[str, PoolVerdict | None]


def to_records(verdicts: Mapping[str, PoolVerdict | None]) -> dict[str, dict[str, Any] | None]:
    """The stored form of verdicts by pool (kept with a spool entry, quarantined)."""
    return {pool: None if v is None else v.to_record() for pool, v in verdicts.items()}


def from_records(records: Mapping[str, Mapping[str, Any] | None]) -> ByPool:
    """Verdicts by pool from their stored form; ValueError when one is not a verdict."""
    return {pool: None if r is None else PoolVerdict.from_record(r) for pool, r in records.items()}
