"""A final outcome as the message log keeps it (mailserver/messagelog), made from what the
front knows when the outcome is decided: the spool entry, the verdicts, the decision, what
handing it on did, and how long each step took (``Steps``)."""

from __future__ import annotations

import dataclasses
import time

from mailserver.front.handover import Outcome
from mailserver.front.outcomes import message_id_of, subject_of
from mailserver.front.policy import Decision
from mailserver.front.spool import Envelope, SpoolEntry
from mailserver.messagelog.record import (
    MessageRecord,
    RecipientOutcome,
    content_verdict,
    scan_steps,
)
from tasks.wire.verdicts import ByPool, to_records

# What each recipient got, by the action carried out for the message.
_RECIPIENT_OUTCOME = {
    "deliver": "delivered",
    "quarantine": "quarantined",
    "reject": "refused",
    "tempfail": "tempfail",
    "dead-letter": "delivered",  # the failed ones are named in the outcome
}


class Steps:
    """Milliseconds per step of one message, where the front can see it."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def took(self, step: str, started: float) -> None:
        """``started``: a ``time.monotonic()`` taken when the step began."""
        self.ms[step] = round((time.monotonic() - started) * 1000, 1)


def is_final(outcome: Outcome, client_waiting: bool) -> bool:
    """Deferred mail and a tempfail nobody heard stay in the spool: not final yet."""
    if outcome.action == "deferred":
        return False
    return client_waiting or outcome.action != "tempfail"


def record_of(
    entry: SpoolEntry,
    outcome: Outcome,
    decision: Decision | None,
    results: ByPool,
    steps: Steps | None = None,
) -> MessageRecord:
    envelope = entry.envelope
    return MessageRecord(
        at=time.time(),
        spool_id=entry.id,
        mail_from=envelope.mail_from,
        recipients=_recipients(envelope, outcome, decision),
        verdict=content_verdict(results),
        action=outcome.action,
        reason=outcome.reason,
        reply=outcome.reply,
        message_id=message_id_of(entry.content),
        client_ip=envelope.peer_ip,
        helo=envelope.helo,
        subject=subject_of(entry.content),
        size=len(entry.content),
        policy=decision.policy if decision else "",
        verdicts=to_records(results),
        steps_ms={**scan_steps(results), **(steps.ms if steps else {})},
        next_hop=outcome.next_hop,
        quarantine=entry.id if outcome.action == "quarantine" else "",
    )


def refusal_record(
    entry: SpoolEntry, reply: str, reason: str, steps: Steps, size: int | None = None
) -> MessageRecord:
    """A message answered before any verdict (scanners busy, the broker or the spool away).
    ``entry.content`` may be only the message's start; ``size`` is then the whole's."""
    outcome = Outcome("tempfail", reply, reason)
    record = record_of(entry, outcome, None, {"av": None, "spam": None}, steps)
    return record if size is None else dataclasses.replace(record, size=size)


def _recipients(
    envelope: Envelope, outcome: Outcome, decision: Decision | None
) -> tuple[RecipientOutcome, ...]:
    failed = dict(outcome.failed)
    usual = _RECIPIENT_OUTCOME.get(outcome.action, outcome.action)
    detail = outcome.next_hop or outcome.reply
    # Recipients under different policies: each as its own group's decision, which names
    # the policy.
    own = {
        rcpt: (_RECIPIENT_OUTCOME.get(part.action, part.action), part.policy)
        for members, part in (decision.split if decision else ())
        for rcpt in members
    }
    return tuple(
        RecipientOutcome(rcpt, "failed", failed[rcpt])
        if rcpt in failed
        else RecipientOutcome(rcpt, *own.get(rcpt, (usual, detail)))
        for rcpt in envelope.rcpt_tos
    )
