"""Carrying out a decision on a spool entry, deliver or quarantine, and giving every failure
an outcome: a failed delivery is tried again later from the decision kept with the entry
(never scanned again), only to the recipients still waiting; a recipient refused for good,
or still waiting when the entry's life runs out, is dead-lettered, with a DSN to the sender
where one is due. Nothing that goes wrong here leaves an entry to be scanned again."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mailserver.front import headers
from mailserver.front.deadletter import DeadLetters
from mailserver.front.delivery import Delivery
from mailserver.front.dsn import DsnSender, Failure
from mailserver.front.outcomes import OutcomeLog
from mailserver.front.policy import Decision
from mailserver.front.quarantine import Quarantine
from mailserver.front.retries import Attempts, RetryStore
from mailserver.front.spool import Spool, SpoolEntry
from mailserver.front.virusnotice import tell_sender_of_virus
from tasks.errors import DeliveryError, RecipientsRefused
from tasks.settings import Settings
from tasks.wire.verdicts import ByPool

log = logging.getLogger(__name__)

REFUSED = "550 5.0.0 Next hop refused the message"
UNAVAILABLE = "451 4.4.1 Next hop unavailable, try again later"
NOT_HANDED_ON = "451 4.3.0 Could not hand the message on, try again later"
EXPIRED = Failure(554, "5.4.7 delivery time expired")
LIFETIME_OVER = "no final outcome within the spool's lifetime"


@dataclass(frozen=True)
class Outcome:
    """What happened to a message: ``action`` as decided, ``reply`` for a waiting client.
    A tempfail when nobody waits leaves the message in the spool, to be tried again."""

    action: str
    reply: str
    reason: str
    # For the message log: what the next hop answered, and the recipients that never got
    # the message with why.
    next_hop: str = ""
    failed: tuple[tuple[str, str], ...] = ()


class Handover:
    """Delivers or quarantines decided messages and ends the life of their spool entries."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        delivery: Delivery,
        quarantine: Quarantine,
        outcomes: OutcomeLog,
    ) -> None:
        self.settings, self.spool, self.delivery = settings, spool, delivery
        self.quarantine, self.outcomes = quarantine, outcomes
        self.retries = RetryStore(spool.root)
        self.dead = DeadLetters(spool.root, outcomes.alert)
        relay = settings.relay
        self.dsn = (
            DsnSender(relay.host, relay.port, settings.hostname)
            if settings.delivery == "relay"
            else None
        )

    def act(
        self, entry: SpoolEntry, decision: Decision, results: ByPool, client_waiting: bool
    ) -> Outcome:
        """The first attempt, right after the scan."""
        if decision.action == "tempfail" and not client_waiting:
            return Outcome("tempfail", decision.reply, decision.reason)
        try:
            rcpts = entry.envelope.rcpt_tos
            unsynced = self._carry_out(entry, decision, results, rcpts, first=client_waiting)
        except Exception as err:  # whatever it is, it is an outcome, not a loop
            attempts = Attempts(decision, results, entry.envelope.rcpt_tos)
            return self._failed(entry, attempts, err, client_waiting)
        self._finish(entry, sync_first=unsynced)
        if not client_waiting and self.settings.virus_sender_notice and self.dsn is not None:
            tell_sender_of_virus(self.dsn, entry, decision, self.settings.hostname)
        return Outcome(decision.action, decision.reply, decision.reason, self._hop_said(entry))

    def retry(self, entry: SpoolEntry, attempts: Attempts) -> Outcome:
        """A later attempt, from the kept decision, to the recipients still waiting."""
        decision, verdicts = attempts.decision, attempts.verdicts
        try:
            self._carry_out(entry, decision, verdicts, attempts.waiting, False, defer_sync=False)
        except Exception as err:
            return self._failed(entry, attempts, err, waiting=False)
        done = replace(attempts, waiting=(), delivered=(*attempts.delivered, *attempts.waiting))
        return replace(self._end(entry, done, decision.reason), next_hop=self._hop_said(entry))

    def expire(self, entry: SpoolEntry, attempts: Attempts | None) -> Outcome:
        """The entry's life ran out: whoever still waits for it will not get it."""
        waiting = attempts.waiting if attempts else entry.envelope.rcpt_tos
        failed = dict.fromkeys(waiting, _expired(attempts.last_error if attempts else ""))
        kept = attempts or Attempts(_NO_DECISION, {}, waiting)
        dsn = self._notify(entry, failed)
        after = replace(kept, waiting=(), failed={**kept.failed, **_texts(failed)},
                        dsn=(*kept.dsn, *dsn))  # fmt: skip
        return self._end(entry, after, LIFETIME_OVER)

    def drop_unanswered(self, entry: SpoolEntry) -> None:
        """Forget an entry whose sender was never answered and keeps the message. A copy its
        session delivered before it ended is made durable before the entry goes."""
        log.warning("message %s: dropped, its sender was never answered and sends it again",
                    entry.id)  # fmt: skip
        delivered_to = None if self.settings.delivery == "relay" else self.settings.maildir / "new"
        self._finish(entry, sync_first=delivered_to)

    def drop_answered(self, entry: SpoolEntry) -> None:
        """Forget an entry whose MTA has our answer and acts on it (a milter's MTA)."""
        self._finish(entry)

    def _carry_out(
        self,
        entry: SpoolEntry,
        decision: Decision,
        verdicts: ByPool,
        rcpts: tuple[str, ...],
        first: bool,
        defer_sync: bool = True,
    ) -> Path | None:
        """``first``: the entry was spooled by the SMTP session that waits for it, so it
        cannot have been delivered before. Returns a folder the delivery left to fsync
        before the spool entry goes."""
        if decision.split:
            return self._carry_out_split(entry, decision, verdicts, rcpts, first, defer_sync)
        if decision.action not in ("deliver", "quarantine"):
            return None  # reject or tempfail to a waiting client (the sender keeps it), discard
        # Our header lines go on top apart: joined, a 25 MB message would be copied for them.
        received = headers.received(entry, self.settings.hostname)
        top = headers.block_for(entry.content, [*decision.header_lines, received])
        message = entry.content
        if decision.tag_subject:  # its Subject is in the message: tagged, it is a new copy
            tag = decision.subject_tag or self.settings.spam_subject_tag
            message, top = headers.tag_subject(top + message, tag), b""
        if decision.action == "quarantine":
            # The quarantine keeps whom it held the message for.
            held = replace(entry, envelope=replace(entry.envelope, rcpt_tos=rcpts))
            self.quarantine.put(held, top + message, decision.reason, verdicts)
            return None
        # The folder's fsync goes with the spool entry's removal, after the reply: the entry
        # keeps the message durable until then, and the reply does not wait for the disk.
        envelope = entry.envelope
        if rcpts != envelope.rcpt_tos:  # a later attempt, to those still waiting
            envelope = replace(envelope, rcpt_tos=rcpts)
        return self.delivery.deliver(entry.id, envelope, message, first, defer_sync, top=top)

    def _carry_out_split(
        self,
        entry: SpoolEntry,
        decision: Decision,
        verdicts: ByPool,
        rcpts: tuple[str, ...],
        first: bool,
        defer_sync: bool,
    ) -> Path | None:
        """Each group's own decision for those of its recipients still waiting. A group that
        fails leaves the others done: they are not sent the message again."""
        unsynced, refused = None, {}
        for members, part in decision.split:
            waiting = tuple(rcpt for rcpt in members if rcpt in rcpts)
            if not waiting:
                continue
            try:
                synced = self._carry_out(entry, part, verdicts, waiting, first, defer_sync)
            except Exception as err:
                failures = failures_of(entry.id, err, waiting)
                refused |= {rcpt: (f.code, f.text) for rcpt, f in failures.items()}
                continue
            unsynced = synced or unsynced
        if refused:
            raise RecipientsRefused(refused)
        return unsynced

    def _failed(
        self, entry: SpoolEntry, attempts: Attempts, err: Exception, waiting: bool
    ) -> Outcome:
        failures = failures_of(entry.id, err, attempts.waiting)
        done = [rcpt for rcpt in attempts.waiting if rcpt not in failures]
        if waiting and not done:
            return self._refused_to_client(entry, err, failures)
        lost = {rcpt: f for rcpt, f in failures.items() if f.code >= 500}
        expired = self._expired(entry)
        if expired:  # the temporary failures are final now
            lost |= {rcpt: _expired(str(f)) for rcpt, f in failures.items() if rcpt not in lost}
        dsn = self._notify(entry, lost)
        now, first_wait_s = time.time(), self.settings.delivery_retry_s
        error = "; ".join(sorted({str(failure) for failure in failures.values()}))
        after = attempts.after(done, _texts(lost), error, now, first_wait_s)
        after = replace(after, dsn=(*after.dsn, *dsn))
        reply = attempts.decision.reply if waiting else ""
        if not after.waiting:
            reason = LIFETIME_OVER if expired else f"{attempts.decision.reason}; {err}"
            return replace(self._end(entry, after, reason), reply=reply)
        self.retries.put(entry.id, after)
        self.outcomes.blob_done(entry.id)  # tried again from the spool: no scan needs it
        log.warning("message %s: delivery to %d recipient(s) failed, next attempt in %.0f s: %s",
                    entry.id, len(after.waiting), after.next_at - now, err)  # fmt: skip
        return Outcome("deferred", reply, f"delivery failed, tried again later: {err}")

    def _refused_to_client(
        self, entry: SpoolEntry, err: Exception, failures: dict[str, Failure]
    ) -> Outcome:
        """Nothing was handed on and the client waits: it hears the failure and keeps the
        message, so we keep no copy."""
        self._finish(entry)
        failed, said = tuple(_texts(failures).items()), "; ".join(sorted(_texts(failures).values()))
        if all(failure.code >= 500 for failure in failures.values()):
            return Outcome("reject", REFUSED, str(err), said, failed)
        reply = UNAVAILABLE if isinstance(err, DeliveryError) else NOT_HANDED_ON
        return Outcome("tempfail", reply, str(err), said, failed)

    def _end(self, entry: SpoolEntry, attempts: Attempts, reason: str) -> Outcome:
        """Nobody waits any more: the entry goes, to ``dead/`` if anyone never got it."""
        if attempts.failed:
            self.dead.bury(entry.id, _record(entry, attempts, reason))
            outcome = Outcome("dead-letter", "", f"{reason}; undeliverable to "
                              f"{len(attempts.failed)} recipient(s)",
                              failed=tuple(attempts.failed.items()))  # fmt: skip
        else:
            self.spool.finish(entry.id)
            outcome = Outcome(attempts.decision.action, "", reason)
        self.retries.remove(entry.id)  # after the entry: a crash between leaves no rescan
        self.outcomes.blob_done(entry.id)
        return outcome

    def _hop_said(self, entry: SpoolEntry) -> str:
        said = getattr(self.delivery, "reply_for", None)  # the deliveries that keep one
        return said(entry.id) if said else ""

    def _notify(self, entry: SpoolEntry, failed: dict[str, Failure]) -> tuple[str, ...]:
        if not failed:
            return ()
        if self.dsn is None:
            return ("no DSN: local delivery",)
        return (self.dsn.send(entry, failed),)

    def _expired(self, entry: SpoolEntry) -> bool:
        return Spool.age_s(entry.id) >= self.settings.spool_max_lifetime_s

    def _finish(self, entry: SpoolEntry, sync_first: Path | None = None) -> None:
        """The final outcome is carried out: the spool entry goes (after the reply, with
        others, once ``sync_first`` is fsynced), and a moment later the bytes the scan jobs
        read (the id is never used again)."""
        self.spool.finish_soon(entry.id, sync_first)
        self.outcomes.blob_done(entry.id)


# An entry whose life ran out before it had verdicts: nothing was decided for it.
_NO_DECISION = Decision("tempfail", "", "not scanned")


def failures_of(entry_id: str, err: Exception, rcpts: tuple[str, ...]) -> dict[str, Failure]:
    """Which recipients the failure ``err`` hit, and how: a refusal names its recipients,
    anything else hit them all. What is not a delivery failure we know of is logged with
    its traceback and taken as temporary: the entry's lifetime bounds it."""
    if isinstance(err, RecipientsRefused):
        return {rcpt: Failure(code, text) for rcpt, (code, text) in err.refused.items()}
    if isinstance(err, DeliveryError):
        return dict.fromkeys(rcpts, Failure(err.code, str(err)))
    if isinstance(err, OSError):
        return dict.fromkeys(rcpts, Failure(451, f"4.3.0 local delivery failed: {err}"))
    log.error("message %s: handing on failed unexpectedly", entry_id, exc_info=err)
    return dict.fromkeys(rcpts, Failure(451, f"4.3.0 {type(err).__name__}: {err}"))


def _expired(last_error: str) -> Failure:
    last = f" (last attempt: {last_error})" if last_error else ""
    return Failure(EXPIRED.code, EXPIRED.text + last)


def _texts(failed: dict[str, Failure]) -> dict[str, str]:
    return {rcpt: str(failure) for rcpt, failure in failed.items()}


def _record(entry: SpoolEntry, attempts: Attempts, reason: str) -> dict[str, Any]:
    """What the dead letter's JSON says about it."""
    envelope = asdict(entry.envelope)
    return {
        "reason": reason,
        "envelope": {**envelope, "rcpt_tos": list(entry.envelope.rcpt_tos)},
        **attempts.to_json(),
    }
