"""From two pool verdicts to one decision. Pure: no I/O, so every branch is unit-tested.

A pool result is the verdict a scan job stored (tasks/wire/verdicts.py; ``status``: clean /
infected / banned / ham / spam / skipped / error), or None when no verdict arrived before the
deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mailserver.front import headers
from mailserver.front.policies.rules import Rules
from tasks.settings import Settings
from tasks.wire.keys import SPAM_POOL
from tasks.wire.verdicts import PoolVerdict

Action = Literal["deliver", "quarantine", "discard", "reject", "tempfail"]
PoolResult = PoolVerdict | None

TEMPFAIL_REPLY = "451 4.7.1 Content scan could not finish, try again later"
# The spam result of a message found infected: its verdict is not waited for, since a virus
# decides the outcome alone.
SPAM_NOT_AWAITED = PoolVerdict(SPAM_POOL, "skipped", reason="a virus was found")
SPAM_NOT_AWAITED_BANNED = PoolVerdict(SPAM_POOL, "skipped", reason="a banned attachment")


@dataclass(frozen=True)
class Decision:
    """What to do with a message, the SMTP reply a waiting client gets, and why."""

    action: Action
    reply: str
    reason: str
    header_lines: list[str] = field(default_factory=list)
    tag_subject: bool = False
    # Which rule of the policy made it, in the setting's own words (the message log).
    policy: str = ""
    subject_tag: str = ""  # what ``tag_subject`` puts in front of the subject
    # Recipients under different policies: each group and its own decision, carried out
    # one by one (this decision is what the client hears and the message log's summary).
    split: tuple[tuple[tuple[str, ...], Decision], ...] = ()

    @classmethod
    def from_record(cls, record: dict) -> Decision:
        """The decision kept as JSON (``dataclasses.asdict``) beside a spool entry."""
        # Records kept before a field existed lack it: its default.
        parts = record.get("split", ())
        split = tuple((tuple(rcpts), cls.from_record(part)) for rcpts, part in parts)
        return cls(**{**record, "header_lines": list(record["header_lines"]), "split": split})


def decide(
    av: PoolResult,
    spam: PoolResult,
    settings: Settings,
    client_waiting: bool,
    rules: Rules | None = None,
    sender: str = "",
) -> Decision:
    """``client_waiting`` is true in pre-queue mode: a virus can then be refused outright.
    ``rules``: the policy of the recipients (default: the settings'), ``sender`` the
    envelope sender its allow and block lists are held against."""
    rules = rules or Rules.from_settings(settings)
    lines = headers.virus_headers(av) + headers.spam_headers(spam, rules.spam_tag_score)
    if virus_found(av):
        return _virus(av, lines, client_waiting, settings.post_queue_virus)
    if av is not None and av.status == "banned" and rules.banned and not rules.bypass:
        return _banned(av, lines, client_waiting)
    if not client_waiting and _unscannable(av, spam):
        # Nobody to answer and retrying cannot help: an administrator has to look at it.
        return Decision("quarantine", "250 2.0.0 Ok: quarantined", "unscannable", lines,
                        policy="unscannable: quarantine")  # fmt: skip
    if av is None or av.status == "error":
        failed = _failure(rules.av_failure_policy, "virus scan failed", lines, "av")
        if failed.action != "deliver":
            return failed
    return _for_sender_and_spam(spam, lines, rules, sender, client_waiting)


def virus_found(av: PoolResult) -> bool:
    return av is not None and av.status == "infected"


def spam_not_awaited(av: PoolVerdict) -> PoolVerdict:
    """The spam result of a message the av verdict refused alone, saying why."""
    return SPAM_NOT_AWAITED if av.status == "infected" else SPAM_NOT_AWAITED_BANNED


def refused_by_av(av: PoolResult) -> bool:
    """The av verdict settles the outcome alone: a virus or a banned attachment."""
    return av is not None and av.status in ("infected", "banned")


def _banned(av: PoolVerdict, lines: list[str], client_waiting: bool) -> Decision:
    part, rule = headers.banned_part(av)
    if client_waiting:
        reply = f"550 5.7.1 Message refused: banned attachment {headers.reply_text(part)}"
        return Decision("reject", reply, f"banned {part} ({rule})",
                        policy=f"banned attachment ({rule}): refused (pre-queue)")  # fmt: skip
    return Decision("quarantine", "250 2.0.0 Ok: quarantined", f"banned {part} ({rule})", lines,
                    policy=f"banned attachment ({rule}): quarantined (post-queue)")  # fmt: skip


def _virus(av: PoolVerdict, lines: list[str], client_waiting: bool, after: str) -> Decision:
    """Refused while the client waits; after the queue (``after``: the setting
    post_queue_virus) kept or dropped, never refused: its sender was answered 250 long ago,
    and a refusal now would be a bounce, virus and all, to a sender that is usually forged."""
    name = headers.virus_name(av)
    reason = f"virus {name}"
    if client_waiting:
        reply = f"550 5.7.1 Message refused: virus found ({name})"
        return Decision("reject", reply, reason, policy="virus: refused (pre-queue)")
    if after == "discard":
        return Decision("discard", "250 2.0.0 Ok: discarded", reason, lines,
                        policy="virus: discarded (post-queue)")  # fmt: skip
    return Decision("quarantine", "250 2.0.0 Ok: quarantined", reason, lines,
                    policy="virus: quarantined (post-queue)")  # fmt: skip


def _unscannable(*results: PoolResult) -> bool:
    return any(result and result.unscannable for result in results)


def _failure(policy: str, reason: str, lines: list[str], pool: str) -> Decision:
    named = f"MAILSCAN_{pool.upper()}_FAILURE_POLICY={policy}"
    if policy == "quarantine":
        return Decision("quarantine", "250 2.0.0 Ok: quarantined", reason, lines, policy=named)
    if policy == "deliver-tagged":
        return Decision("deliver", "250 2.0.0 Ok: delivered", reason, lines, policy=named)
    # tempfail, and backup-engine whose backup could not answer either
    return Decision("tempfail", TEMPFAIL_REPLY, reason, lines, policy=named)


def _for_sender_and_spam(
    spam: PoolResult, lines: list[str], rules: Rules, sender: str, client_waiting: bool
) -> Decision:
    if rules.blocks(sender):
        return _blocked(lines, client_waiting)
    if rules.bypass or rules.allows(sender):
        why = "spam check bypassed" if rules.bypass else "sender allowed"
        return Decision("deliver", "250 2.0.0 Ok: delivered", "clean", lines, policy=why)
    if spam is None or spam.status == "error":
        return _failure(rules.spam_failure_policy, "spam scan failed", lines, "spam")
    return _spam(spam, lines, rules, client_waiting)


def _blocked(lines: list[str], client_waiting: bool) -> Decision:
    if client_waiting:
        return Decision("reject", "550 5.7.1 Message refused: sender blocked by policy",
                        "sender blocked", policy="sender blocked: refused")  # fmt: skip
    return Decision("quarantine", "250 2.0.0 Ok: quarantined", "sender blocked", lines,
                    policy="sender blocked: quarantined (post-queue)")  # fmt: skip


def _spam(spam: PoolVerdict, lines: list[str], rules: Rules, client_waiting: bool) -> Decision:
    engine = spam.first_engine()
    score = (engine.score if engine else None) or 0.0
    if not headers.is_spam(spam, rules.spam_tag_score):
        return Decision("deliver", "250 2.0.0 Ok: delivered", "clean", lines, policy="clean")
    reason = f"spam score {score:.1f}"
    refuse_at = rules.spam_reject_score
    if refuse_at is not None and score >= refuse_at:
        named = f"spam_reject_score {refuse_at:g}"
        if client_waiting:
            reply = f"550 5.7.1 Message refused as spam (score {score:.1f})"
            return Decision("reject", reply, reason, policy=named)
        return Decision("quarantine", "250 2.0.0 Ok: quarantined", reason, lines,
                        policy=f"{named}: quarantined (post-queue)")  # fmt: skip
    limit = rules.spam_quarantine_score
    if limit is not None and score >= limit:
        named = f"spam_quarantine_score {limit:g}"
        return Decision("quarantine", "250 2.0.0 Ok: quarantined", reason, lines, policy=named)
    tag = bool(rules.subject_tag)
    named = "spam: tagged" + (" (subject too)" if tag else "")
    return Decision("deliver", "250 2.0.0 Ok: delivered", "spam, tagged", lines, tag, named,
                    rules.subject_tag if tag else "")  # fmt: skip
