"""The scrubber: the free text a crash report carries only when the administrator adds the
details (the default report has none: tasks/crashes/summary.py).

It does what a deny-list can, no more. Every e-mail address it recognises (the forms are
listed in tasks/crashes/scrub_text.py) becomes a keyed hash, ``[email-<hmac>]``: the vendor
can tell that two reports name the same address, never which one. Subjects, IP addresses and
host names (under a known top-level domain) are masked, and so are attachment names and long
base64 runs. A header block (two header lines or more, of any names, or one of a message's
own) keeps its names only; after a blank line the rest of the text is dropped as a message
body. The output of a command-line scanner is dropped. Fields named like a body, a subject,
a client address or a host are masked whole, also as ``(name, value)`` pairs and bytes keys.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from typing import Any

from tasks.crashes import scrub_text as t
from tasks.crashes.scrub_text import BODY_MASK, EMAIL, IP_MASK, SUBJECT_MASK

__all__ = ["BODY_MASK", "EMAIL", "IP_MASK", "SUBJECT_MASK", "Scrubber", "scrubber_for"]

# Field names whose value is message content, whatever it looks like.
BODY_FIELDS = frozenset({"body", "content", "raw", "raw_message", "eml", "payload_bytes", "data"})
# Field names whose value is masked whole: subjects, and what names the sending client or
# a machine.
FIELD_MASKS = {
    **dict.fromkeys(("subject", "thread-topic", "thread_topic"), SUBJECT_MASK),
    **dict.fromkeys(("peer_ip", "client_ip", "ip", "remote_addr"), IP_MASK),
    **dict.fromkeys(("helo", "host", "hostname", "peer_host", "client_host"), t.HOST_MASK),
    **dict.fromkeys(("filename", "file_name", "attachment"), t.FILE_MASK),
}


class Scrubber:
    """Turns a crashdump (or anything made of dicts, lists and strings) into its scrubbed copy.
    ``key`` makes the address hashes: derive it from the console secret."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def scrub(self, value: Any, field: str = "") -> Any:
        name = field.lower()
        if name in BODY_FIELDS and value not in (None, "", b""):
            return t.BODY_MASK
        if isinstance(value, dict):
            return {self.text(_name(k)): self.scrub(v, _name(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return self._sequence(value, field)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            return self._field_text(name, value)
        return value

    def _sequence(self, items: list[Any] | tuple[Any, ...], field: str) -> list[Any]:
        # A (name, value) pair, as headers are kept in a list: the name says what the value is.
        if len(items) == 2 and isinstance(items[0], str | bytes):
            pair_name = _name(items[0]).lower()
            if pair_name in BODY_FIELDS or pair_name in FIELD_MASKS:
                return [self.text(_name(items[0])), self.scrub(items[1], pair_name)]
        return [self.scrub(item, field) for item in items]

    def _field_text(self, name: str, value: str) -> str:
        if name in FIELD_MASKS and value:
            return FIELD_MASKS[name]
        return self.text(value)

    def text(self, text: str) -> str:
        text = t.ESCAPED_UTF8.sub(_decoded_utf8, text)
        text = t.SCANNER_OUTPUT.sub(lambda m: f"{m[1]} {t.SCANNER_MASK}", text)
        text = drop_message_content(text)
        text = mask_subjects(text)
        text = t.FILE_PARAMETER.sub(lambda m: m[1] + t.FILE_MASK, text)
        text = t.BASE64_RUN.sub(lambda m: _unless_digest(m, t.BASE64_MASK), text)
        if t.AT_SIGN.search(text):
            text = EMAIL.sub(self._address_match, text)
        text = mask_ips(text)
        text = t.HOST_NAME.sub(t.HOST_MASK, text)
        return t.FILE_NAME.sub(t.FILE_MASK, text)

    def _address_match(self, match: re.Match[str]) -> str:
        # A quote before the address is the quote of a repr ('a@b.c'), kept for readability.
        address = match[0].lstrip("'`")
        return match[0][: len(match[0]) - len(address)] + self.address_token(address)

    def address_token(self, address: str) -> str:
        digest = hmac.new(self.key, address.lower().encode(), hashlib.sha256).hexdigest()
        return f"[email-{digest[:12]}]"


def drop_message_content(text: str) -> str:
    """Header blocks keep their names; a blank line after one drops the rest of the text.
    A line with escaped headers goes whole."""
    kept, start = [], 0
    for block in t.HEADER_BLOCK.finditer(text):
        kept += [_without_escaped(text[start : block.start()]), _names_only(block[0])]
        start = block.end()
        if t.BLANK_LINE.match(text, start):
            return "".join([*kept, t.BODY_MASK])
    return "".join([*kept, _without_escaped(text[start:])])


def _without_escaped(text: str) -> str:
    return "\n".join(_drop_escaped(line) for line in text.split("\n"))


def _names_only(block: str) -> str:
    lines = [line for line in block.splitlines(keepends=True) if not line[:1].isspace()]
    return "".join(_masked_header(line) for line in lines)


def _masked_header(line: str) -> str:
    name = line.split(":", 1)[0].rstrip()
    mask = SUBJECT_MASK if name.lower() in ("subject", "thread-topic") else t.VALUE_MASK
    return f"{name}: {mask}" + line[len(line.rstrip("\r\n")) :]


def _drop_escaped(line: str) -> str:
    """A line holding escaped headers keeps only its indentation: in a traceback that is a
    local variable or a source line, not worth a message."""
    if not t.ESCAPED_HEADERS.search(line):
        return line
    indent = line[: len(line) - len(line.lstrip())]
    return indent + BODY_MASK


def mask_subjects(text: str) -> str:
    text = t.SUBJECT_LINE.sub(lambda m: m[1] + SUBJECT_MASK, text)
    text = t.SUBJECT_ARGUMENT.sub(lambda m: m[1] + repr(SUBJECT_MASK), text)
    return t.HEADER_PAIR.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{t.VALUE_MASK}{m[2]}{m[3]}", text)


def mask_ips(text: str) -> str:
    text = t.IPV4.sub(IP_MASK, text)
    return t.IPV6_CANDIDATE.sub(lambda m: IP_MASK if _is_ipv6(m[0]) else m[0], text)


def _is_ipv6(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).version == 6
    except ValueError:
        return False


def _unless_digest(match: re.Match[str], mask: str) -> str:
    # Hex (digests, ids) is ours to keep; base64 mixes both cases.
    run = match[0]
    mixed = run.lower() != run and run.upper() != run
    return mask if mixed else run


def _decoded_utf8(match: re.Match[str]) -> str:
    try:
        return bytes.fromhex(match[0].replace("\\x", "")).decode()
    except UnicodeDecodeError:
        return match[0]


def _name(key: Any) -> str:
    return key.decode("utf-8", errors="replace") if isinstance(key, bytes) else str(key)


def scrubber_for(secret: bytes) -> Scrubber:
    """The address hash key is derived from the console secret, never the secret itself."""
    return Scrubber(hmac.new(secret, b"mailscan crash report addresses", hashlib.sha256).digest())
