"""Learning from mistakes: teach spamd's Bayes a message as spam or ham, through the spam
pool (``tasks.learn``, the one client spamd lets learn), and the two quarantine actions built
on it. The console's buttons and ``mailscan learn`` share these, and audit each action.

- "Not spam: release": learn as ham, then release (deliver, and forget the entry). Nothing is
  released when learning fails, so the button never half-works silently; plain "Release"
  still delivers without teaching.
- "Spam: confirm": learn as spam, then delete the entry: confirmed spam has nothing left to
  wait for in the quarantine. Nothing is deleted when learning fails. For a delivered
  message, from the copy the administrator uploads (its Message-ID checked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from mailserver.console import quarantined
from mailserver.front.delivery import Delivery
from mailserver.front.outcomes import message_id_of
from mailserver.front.quarantine import Quarantine
from mailserver.messagelog.query import normal_message_id
from tasks.crashes import reports as crashreports
from tasks.errors import DeliveryError, LearnFailed
from tasks.settings import Settings
from tasks.wire.keys import LEARN_TASK

# A learn job queues behind the spam pool's scans; a minute covers a busy pool, and past it
# the administrator is told rather than kept waiting.
LEARN_WAIT_S = 60.0


@dataclass
class Teacher:
    """Sends learn jobs to the spam pool and waits for their answer (blocking: the console
    calls it off the event loop)."""

    settings: Settings
    app: Celery

    def teach(self, message_class: str, message: bytes) -> Lesson:
        """What spamd's Bayes made of ``message``: the pool teaches it the head a scan gives
        spamd. A message larger than mailscan accepts as mail (``MAILSCAN_MAX_MESSAGE_BYTES``)
        is no mail mailscan scans: it raises LearnFailed and is not sent."""
        cap = self.settings.max_message_bytes
        if len(message) > cap:
            raise LearnFailed(
                f"the file is larger than the mail mailscan accepts ({len(message)} bytes, "
                f"MAILSCAN_MAX_MESSAGE_BYTES={cap}): nothing to learn"
            )
        result = self.app.send_task(LEARN_TASK, args=[message_class, message])
        try:
            answer: dict[str, Any] = result.get(timeout=LEARN_WAIT_S)
        except CeleryTimeout:
            raise LearnFailed(f"no spam worker answered within {LEARN_WAIT_S:.0f} s") from None
        finally:
            result.forget()
        if answer.get("error"):
            raise LearnFailed(answer["error"])
        learnt_bytes = int(answer.get("learnt_bytes", len(message)))
        return Lesson(message_class, bool(answer.get("learnt")), learnt_bytes, len(message))


@dataclass(frozen=True)
class Lesson:
    """What spamd's Bayes made of a message taught as ``message_class``: whether it learnt
    it, and how many of its bytes it was given."""

    message_class: str
    learnt: bool
    learnt_bytes: int
    message_bytes: int

    def text(self) -> str:
        """In words, e.g. ``learnt as spam (first 511990 of 2000000 bytes, as scanned)``."""
        # spamd's answer to TELL says only whether Bayes changed: it knew the message already,
        # or could not write its database (its log says which).
        said = "learnt as" if self.learnt else "not new to spamd as"
        if self.learnt_bytes < self.message_bytes:
            part = f"first {self.learnt_bytes} of {self.message_bytes} bytes, as scanned"
            return f"{said} {self.message_class} ({part})"
        return f"{said} {self.message_class}"

    def audited(self) -> str:
        """What the audit log keeps of it."""
        return "learnt" if self.learnt else "nothing new"


def not_spam(
    quarantine: Quarantine, delivery: Delivery, teacher: Teacher, audit: redis.Redis,
    entry_id: str, by: str,
) -> str:  # fmt: skip
    """Learn the quarantined message as ham, then release it; what was done, in words."""
    lesson = teacher.teach("ham", _message(quarantine, entry_id))
    spamd = lesson.audited()
    try:
        quarantined.release(quarantine, delivery, entry_id)
    except DeliveryError:
        crashreports.audit(audit, "quarantine not spam: learnt as ham, delivery failed", by,
                           message=entry_id, spamd=spamd)  # fmt: skip
        raise
    crashreports.audit(audit, "quarantine not spam: learnt as ham, released", by,
                       message=entry_id, spamd=spamd)  # fmt: skip
    return f"Message {entry_id} {lesson.text()}, released and delivered."


def confirm_spam(
    quarantine: Quarantine, teacher: Teacher, audit: redis.Redis, entry_id: str, by: str
) -> str:
    """Learn the quarantined message as spam, then delete it; what was done, in words."""
    lesson = teacher.teach("spam", _message(quarantine, entry_id))
    quarantined.remove(quarantine, entry_id)
    spamd = lesson.audited()
    crashreports.audit(audit, "quarantine spam confirmed: learnt as spam, deleted", by,
                       message=entry_id, spamd=spamd)  # fmt: skip
    return f"Message {entry_id} {lesson.text()} and deleted."


def _message(quarantine: Quarantine, entry_id: str) -> bytes:
    quarantined.metadata(quarantine, entry_id)  # NotQuarantined for an id that is not one
    return (quarantine.root / f"{entry_id}.eml").read_bytes()


def confirm_delivered_spam(
    teacher: Teacher, audit: redis.Redis, logged_message_id: str, copy: bytes,
    spool_id: str, by: str,
) -> str:  # fmt: skip
    """Learn as spam a delivered message, from the copy the administrator saved from the
    mailbox (mailscan keeps none once delivered). The copy must carry the logged message's
    Message-ID, so a wrong file cannot teach Bayes in this message's name."""
    copy_id = normal_message_id(message_id_of(copy))
    if not logged_message_id or copy_id != normal_message_id(logged_message_id):
        raise LearnFailed(f"the file is not message {spool_id} (its Message-ID differs)")
    lesson = teacher.teach("spam", copy)
    crashreports.audit(audit, "delivered spam confirmed: learnt as spam", by,
                       message=spool_id, spamd=lesson.audited())  # fmt: skip
    return f"Message {spool_id} {lesson.text()}."
