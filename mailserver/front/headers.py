"""The header lines mailscan adds: Received, Return-Path, and the scan results, written the
way SpamAssassin and the common virus scanners write theirs so existing filters match them."""

from __future__ import annotations

import email.utils
import re

from mailserver.front import envelopecheck
from mailserver.front.fieldtext import field_text
from mailserver.front.spool import SpoolEntry
from tasks.wire.verdicts import EngineVerdict, PoolVerdict

FOLD_AT = 76
# An envelope address is at most 256 octets (RFC 5321 4.5.3.1.3): kept whole.
ADDRESS_MAX = 512
_ADDRESS_BRACKETS = re.compile(r"[<>]")


def line_ending(content: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in content[:4096] else b"\n"


def received(entry: SpoolEntry, hostname: str) -> str:
    """Our trace field, as Postfix writes its own: ``from HELO (unknown [PEER])``.

    SpamAssassin takes the client's address from the bracketed address after the HELO name,
    and so would a reader looking for the first one: only the peer's address is written in
    brackets, whatever the client said in HELO. No reverse lookup is made: ``unknown`` is
    what SpamAssassin reads as a client without a reverse name, as it did before, unless
    the MTA in front gave the name it verified (XFORWARD). Behind such an MTA the peer is
    its client, as it said (mailserver/front/xforward.py)."""
    env = entry.envelope
    date = email.utils.formatdate(env.received_at or None, localtime=False)
    peer = envelopecheck.peer_literal(env.peer_ip)
    name = env.peer_name if envelopecheck.is_host_name(env.peer_name) else "unknown"
    client = f"{name} [{peer}]" if peer else "unknown"
    protocol = "ESMTPS" if env.tls else "ESMTP"  # RFC 3848
    return (
        f"Received: from {envelopecheck.received_helo(env.helo)} ({client})\r\n"
        f"\tby {field_text(hostname)} (mailscan) with {protocol} id {field_text(entry.id)};\r\n"
        f"\t{date}"
    )


def return_path(entry: SpoolEntry) -> str:
    return return_path_of(entry.envelope.mail_from)


def return_path_of(mail_from: str) -> str:
    # aiosmtpd hands the null sender over as "<>": without its brackets, it is empty.
    return f"Return-Path: <{_ADDRESS_BRACKETS.sub('', field_text(mail_from, ADDRESS_MAX))}>"


def is_spam(spam: PoolVerdict, tag_score: float | None = None) -> bool:
    """spamd's verdict, or the score against ``tag_score`` when a policy sets one."""
    verdict = spam.first_engine()
    if tag_score is None or verdict is None or spam.status not in ("spam", "ham"):
        return spam.status == "spam"
    return (verdict.score or 0.0) >= tag_score


def spam_headers(spam: PoolVerdict | None, tag_score: float | None = None) -> list[str]:
    """``tag_score``: the recipients' policy's spam score, shown as the required one."""
    if spam is not None and spam.status == "skipped":
        # Spam is never skipped for its size (it is truncated): a skip says its own reason.
        engine = spam.first_engine()
        detail = engine.detail.removeprefix("not scanned: ") if engine else ""
        why = field_text(spam.reason or detail) or "skipped"
        return [f"X-Spam-Status: No, not scanned ({why})"]
    verdict = spam.first_engine() if spam is not None else None
    if verdict is None or spam is None or spam.status == "error":
        return ["X-Spam-Status: Unknown, scan failed"]
    flagged = is_spam(spam, tag_score)
    score = verdict.score or 0.0
    required = tag_score if tag_score is not None else verdict.threshold or 0.0
    tests = ",".join(field_text(rule) for rule in verdict.rules) or "none"
    status = (
        f"{'Yes' if flagged else 'No'}, score={score:.1f} required={required:.1f} tests={tests}"
        f"{_truncation_note(verdict)}"
    )
    return [
        f"X-Spam-Flag: {'YES' if flagged else 'NO'}",
        f"X-Spam-Score: {score:.1f}",
        "X-Spam-Status: " + _fold(status),
    ]


def _truncation_note(verdict: EngineVerdict) -> str:
    """Said when SpamAssassin saw the head of the message alone (MAILSCAN_SPAM_MAX_BYTES)."""
    if not verdict.truncated:
        return ""
    return f" (first {verdict.scanned_bytes} bytes of {verdict.message_bytes} scanned)"


def virus_headers(av: PoolVerdict | None) -> list[str]:
    if av is None:
        return ["X-Virus-Scanned: mailscan; failed (no verdict in time)", "X-Virus-Status: Unknown"]
    engines = " ".join(field_text(f"{v.engine}={v.status}") for v in av.engines)
    status = _VIRUS_STATUS.get(av.status, "Unknown")
    lines = [f"X-Virus-Scanned: mailscan; {engines}", f"X-Virus-Status: {status}"]
    names = [field_text(name) for name in av.virus_names()]
    if names:
        lines.append("X-Virus-Name: " + ", ".join(names))
    if av.banned_engine() is not None:
        part, rule = banned_part(av)
        lines.append(f"X-Banned-Attachment: {part} ({rule})")
    return lines


_VIRUS_STATUS = {"clean": "Clean", "infected": "Infected", "banned": "Banned"}


def banned_part(av: PoolVerdict) -> tuple[str, str]:
    """The banned attachment and the rule it breaks, fit for a header field."""
    engine = av.banned_engine()
    part = engine.part if engine and engine.part else "unknown"
    rule = engine.rules[0] if engine and engine.rules else "unknown"
    return field_text(part), field_text(rule)


def reply_text(text: str) -> str:
    """``text`` fit for an SMTP reply line: printable ASCII, others shown as ``?``."""
    return "".join(char if " " <= char <= "~" else "?" for char in text)


def virus_name(av: PoolVerdict) -> str:
    """The first virus name, fit for a header field and a reply line."""
    names = av.virus_names()
    return field_text(names[0]) if names else "unknown"


def prepend(content: bytes, lines: list[str]) -> bytes:
    """Put header lines on top of the message, in the message's own line ending."""
    return block_for(content, lines) + content


def block_for(content: bytes, lines: list[str]) -> bytes:
    """The header lines ``prepend`` puts on top of ``content``, each line ended."""
    eol = line_ending(content)
    block = "\r\n".join(lines).replace("\r\n", eol.decode()).encode("utf-8", "replace")
    return block + eol


_SUBJECT_FIELD = re.compile(rb"(?im)^subject:[ \t]?")


def tag_subject(content: bytes, tag: str) -> bytes:
    """Prefix the Subject with ``tag``, adding a Subject when the message has none."""
    eol = line_ending(content)
    head_end = content.find(eol + eol)
    head = content if head_end < 0 else content[:head_end]
    replacement = b"Subject: " + tag.encode() + b" "
    # A function, not a template: the tag is literal text, its backslashes included.
    tagged, count = _SUBJECT_FIELD.subn(lambda _: replacement, head, count=1)
    if count == 0:
        return prepend(content, [f"Subject: {tag}"])
    return tagged + content[len(head) :]


def _fold(value: str) -> str:
    """Fold a long header value at commas, as SpamAssassin does with its tests list."""
    out, width = [], len("X-Spam-Status: ")
    for piece in value.split(","):
        if out and width + len(piece) + 1 > FOLD_AT:
            out.append(",\r\n\t")
            width = 8
        elif out:
            out.append(",")
            width += 1
        out.append(piece)
        width += len(piece)
    return "".join(out)
