"""The av verdict as a policy section with its own banned extension list sees it.

The pools do not know the recipients: the ``banned`` engine judges with the global list
(``MAILSCAN_BANNED_EXTENSIONS``) and lists, for each extension it saw, the first file name
that has it. A section's ``banned_extensions`` judges those names again: ``add`` bans more of
them, ``only`` bans those and no others. A ban that does not rest on a name's extension (a
type by the bytes, an encrypted archive, a bound, a class id name) stands for every section;
so does one from a pool that lists no names (a version before this one)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from mailserver.front.policies.rules import ExtensionList, Rules
from tasks.attachments.names import extension_of, extension_rule
from tasks.wire.verdicts import EngineVerdict, PoolVerdict, Status

# The part a cut list of names stands for: the names past the cut could not be judged.
UNJUDGED = "attachments past the names listed"


def as_section_sees_it(
    av: PoolVerdict | None, rules: Rules, global_list: Iterable[str]
) -> PoolVerdict | None:
    """``av`` with its banned engine's verdict judged by ``rules``' own list, if it has one."""
    own = rules.banned_extensions
    if av is None or own is None or av.status == "infected":
        return av
    engine = _names_engine(av)
    if engine is None or (engine.status == "banned" and not engine.banned_by_name):
        return av
    judged = _judged(engine, own, own.applied_to(global_list))
    engines = tuple(judged if e is engine else e for e in av.engines)
    return replace(av, status=_av_status(engines), engines=engines)


def _names_engine(av: PoolVerdict) -> EngineVerdict | None:
    return next((e for e in av.engines if e.status == "banned" or e.names), None)


def _judged(engine: EngineVerdict, own: ExtensionList, banned: frozenset[str]) -> EngineVerdict:
    for name in engine.names:
        rule = extension_rule(name, banned)
        if rule:
            said = f"banned_extensions {own.how} .{extension_of(name)}"
            if rule.startswith("double"):
                said += f" ({rule})"
            return _banned(engine, name, said, by_name=True)
    if engine.names_cut:
        # Refused rather than passed: a name past the cut may be one this section bans.
        said = f"banned_extensions {own.how}: more file names than a verdict lists"
        return _banned(engine, UNJUDGED, said, by_name=False)
    return replace(engine, status="clean", part=None, rules=(), detail="", banned_by_name=False)


def _banned(engine: EngineVerdict, part: str, rule: str, by_name: bool) -> EngineVerdict:
    return replace(engine, status="banned", part=part, rules=(rule,), detail=f"{part}: {rule}",
                   banned_by_name=by_name)  # fmt: skip


def _av_status(engines: tuple[EngineVerdict, ...]) -> Status:
    """What the av pool would have said (tasks/runner.py, combine): a virus first, then a
    banned attachment, then a failed engine."""
    statuses = {engine.status for engine in engines}
    order: tuple[Status, ...] = ("infected", "banned", "error")
    return next((status for status in order if status in statuses), "clean")
