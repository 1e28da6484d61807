"""Pool verdicts for tests of the front: what the av and spam pools would have said."""

from __future__ import annotations

from typing import Any

from tasks.wire.verdicts import EngineVerdict, PoolVerdict, Status


def av_verdict(status: Status = "clean", virus: str | None = None, **pool: Any) -> PoolVerdict:
    """The av pool's verdict, as one clamav engine gave it."""
    engine = EngineVerdict("clamav", status, virus=virus)
    return PoolVerdict("av", status, (engine,), **pool)


def spam_verdict(status: Status = "ham", score: float = 1.0, **pool: Any) -> PoolVerdict:
    """The spam pool's verdict, as spamassassin gave it (GTUBE's rule when it is spam)."""
    rules = ("GTUBE",) if status == "spam" else ()
    engine = EngineVerdict("spamassassin", status, score=score, threshold=5.0, rules=rules)
    return PoolVerdict("spam", status, (engine,), **pool)


def banned_verdict(
    part: str, rule: str, names: tuple[str, ...] = (), by_name: bool = False, cut: bool = False
) -> PoolVerdict:
    """The av pool's verdict when clamd found nothing and the banned engine refused ``part``
    (``by_name``: by its extension alone, having seen ``names``)."""
    engines = (
        EngineVerdict("clamav", "clean"),
        EngineVerdict(
            "banned",
            "banned",
            rules=(rule,),
            part=part,
            names=names,
            names_cut=cut,
            banned_by_name=by_name,
        ),
    )
    return PoolVerdict("av", "banned", engines)


def names_verdict(*names: str, cut: bool = False) -> PoolVerdict:
    """The av pool's verdict when neither clamd nor the banned engine (global list) refused
    anything, the banned engine having seen ``names``."""
    engines = (
        EngineVerdict("clamav", "clean"),
        EngineVerdict("banned", "clean", names=names, names_cut=cut),
    )
    return PoolVerdict("av", "clean", engines)
