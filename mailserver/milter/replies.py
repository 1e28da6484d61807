"""A decision of the pipeline as milter replies: our header fields added by header actions
(never the body sent back), the subject tag by a header change, Postfix's hold queue for
a quarantine, and the SMTP reply for a refusal."""

from __future__ import annotations

from mailserver.front.policy import Decision
from mailserver.milter import codec
from mailserver.milter.codec import Negotiated
from mailserver.milter.message import Message

SPOOL_FAILED = "451 4.3.0 Could not store the message, try again later"
BROKER_AWAY = "451 4.3.0 Scanner queue unavailable, try again later"
TOO_BIG = "552 5.3.4 Message too big for the scanner"
# The MTA does not let us put mail on hold: it stays with its sender rather than pass.
NO_HOLD = "451 4.7.1 Message needs review and cannot be held here, try again later"


def for_decision(
    decision: Decision, message: Message, agreed: Negotiated, subject_tag: str
) -> list[bytes]:
    """The packets that end a message: edits first, then the final word."""
    if decision.action in ("reject", "tempfail"):
        return [codec.reply_code(decision.reply)]
    if decision.action == "quarantine" and not agreed.actions & codec.HOLD:
        return [codec.reply_code(NO_HOLD)]
    edits = header_edits(decision, message, agreed, subject_tag)
    if decision.action == "quarantine":
        edits.append(codec.quarantine(f"mailscan: {decision.reason}"))
    return [*edits, codec.packet(codec.ACCEPT)]


def refusal(reply: str) -> list[bytes]:
    return [codec.reply_code(reply)]


def header_edits(
    decision: Decision, message: Message, agreed: Negotiated, subject_tag: str
) -> list[bytes]:
    edits = []
    if agreed.actions & codec.ADD_HEADERS:
        leading = _leading(agreed)
        # Each inserted at the top, last first: on top in our order, above any field of
        # the same name the sender wrote (filters read the first one).
        for line in reversed(decision.header_lines):
            name, _, value = line.partition(":")
            edits.append(codec.insert_header(0, name, leading + value.lstrip(" ")))
    if decision.tag_subject:
        edits.extend(_tagged_subject(subject_tag, message, agreed))
    return edits


def _tagged_subject(tag: str, message: Message, agreed: Negotiated) -> list[bytes]:
    leading = _leading(agreed)
    if message.subject is None:
        if not agreed.actions & codec.ADD_HEADERS:
            return []
        return [codec.add_header("Subject", leading + tag)]
    if not agreed.actions & codec.CHANGE_HEADERS:
        return []
    value = f"{leading}{tag} {message.subject.lstrip(' ')}"
    return [codec.change_header(1, "Subject", value)]


def _leading(agreed: Negotiated) -> str:
    """With the leading space agreed, a value is taken as it is; without, the MTA puts
    one space after the colon itself."""
    return " " if agreed.steps & codec.HEADER_LEADING_SPACE else ""
