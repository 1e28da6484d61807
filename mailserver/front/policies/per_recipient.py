"""One message, recipients under different policies: a decision per group of recipients,
and the one answer the SMTP client gets. After DATA a reply covers every recipient (RFC
5321 3.3), so the message is refused only when every group refuses it; otherwise it is
accepted and each group's decision is carried out for its recipients, a refusal becoming
what it is after the queue (a quarantine). A scan that could not finish is the same for
every group: any group's temporary failure makes the whole message one."""

from __future__ import annotations

from dataclasses import replace

from mailserver.front.policies.banned_names import as_section_sees_it
from mailserver.front.policies.rules import DEFAULT, Policies, Rules
from mailserver.front.policy import Decision, PoolResult, decide, refused_by_av, virus_found
from tasks.settings import Settings

ACCEPTED = {"deliver": "delivered", "quarantine": "quarantined", "discard": "discarded"}


def decide_for_recipients(
    av: PoolResult,
    spam: PoolResult,
    settings: Settings,
    policies: Policies,
    sender: str,
    rcpts: tuple[str, ...],
    client_waiting: bool,
) -> Decision:
    if virus_found(av):  # no section changes what becomes of a virus: one decision
        return decide(av, spam, settings, client_waiting, policies.default, sender)
    groups = policies.groups(rcpts) or [(policies.default, rcpts)]
    decided = [(members, _decide(av, spam, settings, rules, sender, client_waiting))
               for rules, members in groups]  # fmt: skip
    if len(decided) == 1:
        return decided[0][1]
    for _, decision in decided:
        if decision.action == "tempfail":
            return decision
    if all(decision.action == "reject" for _, decision in decided):
        return decided[0][1]
    if client_waiting:
        decided = [
            (members, _decide(av, spam, settings, rules, sender, False))
            if decision.action == "reject" else (members, decision)
            for (rules, members), (_, decision) in zip(groups, decided, strict=True)
        ]  # fmt: skip
    decided = _one_quarantine(decided)
    return decided[0][1] if len(decided) == 1 else _combined(decided)


def one_for_all(decision: Decision) -> Decision:
    """For a front whose MTA carries out one outcome per message (the milter): the
    strictest group's decision, so no recipient gets what their policy holds back."""
    if not decision.split:
        return decision
    strictness = {"quarantine": 0, "discard": 1, "deliver": 2}
    return min((part for _, part in decision.split), key=lambda d: strictness[d.action])


def bans_settle_for_all(policies: Policies, rcpts: tuple[str, ...]) -> bool:
    """Whether any banned attachment the av pool finds refuses the message for every
    recipient, their policies unseen by the pool: then the spam job may skip spamd."""
    return all(
        rules.banned and not rules.bypass and rules.banned_extensions is None
        for rules, _ in policies.groups(rcpts)
    )


def settled_by_av(
    av: PoolResult, settings: Settings, policies: Policies, rcpts: tuple[str, ...]
) -> bool:
    """Whether the av verdict alone settles the message: a virus, or a banned attachment
    every recipient's policy refuses. The spam verdict is then not awaited."""
    if not refused_by_av(av):
        return False
    return virus_found(av) or refuses_banned_for_all(av, settings, policies, rcpts)


def refuses_banned_for_all(
    av: PoolResult, settings: Settings, policies: Policies, rcpts: tuple[str, ...]
) -> bool:
    """Whether a banned attachment alone settles the message for every recipient (each
    judging with its own extension list): then the spam verdict need not be awaited."""
    return all(
        rules.banned and not rules.bypass and _judged(av, settings, rules).status == "banned"
        for rules, _ in policies.groups(rcpts)
    )


def _judged(av: PoolResult, settings: Settings, rules: Rules) -> PoolResult:
    return as_section_sees_it(av, rules, settings.banned_extensions)


def _decide(
    av: PoolResult,
    spam: PoolResult,
    settings: Settings,
    rules: Rules,
    sender: str,
    client_waiting: bool,
) -> Decision:
    decision = decide(_judged(av, settings, rules), spam, settings, client_waiting, rules, sender)
    if rules.name == DEFAULT:
        return decision
    return replace(decision, policy=f"{rules.name}: {decision.policy}")


def _one_quarantine(
    decided: list[tuple[tuple[str, ...], Decision]],
) -> list[tuple[tuple[str, ...], Decision]]:
    """The quarantine keeps one copy per message: groups that quarantine share the first
    such group's copy (and reason)."""
    held = [(members, d) for members, d in decided if d.action == "quarantine"]
    if len(held) < 2:
        return decided
    together = tuple(rcpt for members, _ in held for rcpt in members)
    others = [(members, d) for members, d in decided if d.action != "quarantine"]
    return [*others, (together, held[0][1])]


def _combined(decided: list[tuple[tuple[str, ...], Decision]]) -> Decision:
    actions = {decision.action for _, decision in decided}
    action = next(a for a in ("deliver", "quarantine", "discard") if a in actions)
    said = "; ".join(f"{len(members)} {ACCEPTED[d.action]}" for members, d in decided)
    return Decision(
        action=action,
        reply=f"250 2.0.0 Ok: {said}",
        reason="; ".join(d.reason for _, d in decided),
        header_lines=[],
        policy="; ".join(d.policy for _, d in decided),
        split=tuple(decided),
    )
