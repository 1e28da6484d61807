"""The header lines mailscan adds: Received, Return-Path, and the scan results, written the
way SpamAssassin and the common virus scanners write theirs so existing filters match them."""

from __future__ import annotations

import email.utils
import re

from mailserver.front.spool import SpoolEntry
from tasks.wire.verdicts import PoolVerdict

FOLD_AT = 76


def line_ending(content: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in content[:4096] else b"\n"


def received(entry: SpoolEntry, hostname: str) -> str:
    env = entry.envelope
    date = email.utils.formatdate(env.received_at or None, localtime=False)
    helo = _clean(env.helo) or "unknown"
    peer = _clean(env.peer_ip) or "unknown"
    protocol = "ESMTPS" if env.tls else "ESMTP"  # RFC 3848
    return (
        f"Received: from {helo} ([{peer}])\r\n"
        f"\tby {hostname} (mailscan) with {protocol} id {entry.id};\r\n\t{date}"
    )


def return_path(entry: SpoolEntry) -> str:
    return return_path_of(entry.envelope.mail_from)


def return_path_of(mail_from: str) -> str:
    return f"Return-Path: <{_clean(mail_from)}>"


def spam_headers(spam: PoolVerdict | None) -> list[str]:
    if spam is not None and spam.status == "skipped":
        return [f"X-Spam-Status: No, not scanned ({spam.reason or 'message too large'})"]
    verdict = spam.first_engine() if spam is not None else None
    if verdict is None or spam is None or spam.status == "error":
        return ["X-Spam-Status: Unknown, scan failed"]
    is_spam = spam.status == "spam"
    score, required = verdict.score or 0.0, verdict.threshold or 0.0
    tests = ",".join(verdict.rules) or "none"
    status = (
        f"{'Yes' if is_spam else 'No'}, score={score:.1f} required={required:.1f} tests={tests}"
    )
    return [
        f"X-Spam-Flag: {'YES' if is_spam else 'NO'}",
        f"X-Spam-Score: {score:.1f}",
        "X-Spam-Status: " + _fold(status),
    ]


def virus_headers(av: PoolVerdict | None) -> list[str]:
    if av is None:
        return ["X-Virus-Scanned: mailscan; failed (no verdict in time)", "X-Virus-Status: Unknown"]
    engines = " ".join(f"{v.engine}={v.status}" for v in av.engines)
    status = {"clean": "Clean", "infected": "Infected", "error": "Unknown"}[av.status]
    lines = [f"X-Virus-Scanned: mailscan; {engines}", f"X-Virus-Status: {status}"]
    names = av.virus_names()
    if names:
        lines.append("X-Virus-Name: " + ", ".join(names))
    return lines


def virus_name(av: PoolVerdict) -> str:
    names = av.virus_names()
    return names[0] if names else "unknown"


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


def _clean(text: str) -> str:
    """Nothing from the client may break out of its header line."""
    return re.sub(r"[\r\n\t<>]", "", text)[:200]
