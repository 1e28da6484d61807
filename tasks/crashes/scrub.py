"""The scrubber: what a crash report may carry off this server.

Every e-mail address anywhere (envelope, headers, exception messages, tracebacks, local
variables, even dictionary keys) becomes a keyed hash, ``[email-<hmac>]``: the vendor can tell
that two reports name the same address, never which one. Subjects and IP addresses are
masked. A crashdump holds no message body, but anything that looks like one (a header block
followed by a blank line, in plain or in escaped text) is dropped all the same, and so are
fields named like a body.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from typing import Any

SUBJECT_MASK = "[subject removed]"
IP_MASK = "[ip]"
BODY_MASK = "[message content removed]"
# Field names whose value is message content, whatever it looks like.
BODY_FIELDS = frozenset({"body", "content", "raw", "raw_message", "eml", "payload_bytes", "data"})
# Field names whose value is masked whole: subjects, and what names the sending client.
FIELD_MASKS = {
    **dict.fromkeys(("subject", "thread-topic", "thread_topic"), SUBJECT_MASK),
    **dict.fromkeys(("peer_ip", "client_ip", "ip", "remote_addr"), IP_MASK),
    "helo": "[helo removed]",
}

# addr-spec, generously: every RFC 5322 atext character (and dots) in the local part, or a
# quoted local part; "@" or its URL-encoded form; a domain name or an address literal; and any
# further "@domain" glued on, so two addresses run together are masked as one.
_LOCAL = r"""(?:"[^"\r\n]{0,64}"|[\w.!#$%&'*+/=?^`{|}~-]{1,64})"""
_AT = r"(?:@|%40)"
_DOMAIN = r"(?:\[[^\]\s]{1,64}\]|[\w-]+(?:\.[\w-]+)*)"
EMAIL = re.compile(rf"{_LOCAL}(?:{_AT}{_DOMAIN})+", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_HEADER_NAMES = (
    r"(?:from|to|cc|bcc|reply-to|sender|subject|date|received|return-path|message-id|"
    r"mime-version|content-type|content-transfer-encoding|x-[\w-]+)"
)
# "Subject: ..." in text, and 'subject': '...' in the repr of a dict (local variables).
_SUBJECT_LINE = re.compile(r"(?im)^([ \t>]*(?:subject|thread-topic)[ \t]*:[ \t]*).*$")
_SUBJECT_ESCAPED = re.compile(r"""(?i)((?:\\n|['"])subject[ \t]*:[ \t]*)(?:(?!\\r|\\n|['"]).)*""")
_SUBJECT_ITEM = re.compile(r"""(?i)(['"]subject['"]\s*:\s*)(['"])(?:\\.|(?!\2).)*\2""")
# A header block of two or more lines, then a blank line: a message; dropped with all after it.
_RAW_MESSAGE = re.compile(
    rf"(?im)^{_HEADER_NAMES}[ \t]*:.*\n(?:[ \t].*\n)*(?:{_HEADER_NAMES}[ \t]*:.*\n(?:[ \t].*\n)*)+"
    r"\r?\n[\s\S]*"
)
# The same in escaped form (a bytes or str repr on one line): header, escaped blank line.
_ESCAPED_MESSAGE = re.compile(
    rf"(?i)(?:^|\\n|['\"]){_HEADER_NAMES}[ \t]*:[^\n]*?(?:\\r)?\\n(?:\\r)?\\n"
)


class Scrubber:
    """Turns a crashdump (or anything made of dicts, lists and strings) into its scrubbed copy.
    ``key`` makes the address hashes: derive it from the console secret."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def scrub(self, value: Any, field: str = "") -> Any:
        name = field.lower()
        if name in BODY_FIELDS and value not in (None, "", b""):
            return BODY_MASK
        if isinstance(value, dict):
            return {self.text(str(k)): self.scrub(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(item, field) for item in value]
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            return self._field_text(name, value)
        return value

    def _field_text(self, name: str, value: str) -> str:
        if name in FIELD_MASKS and value:
            return FIELD_MASKS[name]
        return self.text(value)

    def text(self, text: str) -> str:
        text = drop_message_content(text)
        text = _SUBJECT_LINE.sub(lambda m: m[1] + SUBJECT_MASK, text)
        text = _SUBJECT_ESCAPED.sub(lambda m: m[1] + SUBJECT_MASK, text)
        text = _SUBJECT_ITEM.sub(lambda m: f"{m[1]}{m[2]}{SUBJECT_MASK}{m[2]}", text)
        text = EMAIL.sub(self._address_match, text)
        return mask_ips(text)

    def _address_match(self, match: re.Match[str]) -> str:
        # A quote before the address is the quote of a repr ('a@b.c'), kept for readability.
        address = match[0].lstrip("'`")
        return match[0][: len(match[0]) - len(address)] + self.address_token(address)

    def address_token(self, address: str) -> str:
        digest = hmac.new(self.key, address.lower().encode(), hashlib.sha256).hexdigest()
        return f"[email-{digest[:12]}]"


def drop_message_content(text: str) -> str:
    text = _RAW_MESSAGE.sub(BODY_MASK, text)
    return "\n".join(_drop_escaped(line) for line in text.split("\n"))


def _drop_escaped(line: str) -> str:
    """A line holding an escaped message (headers, then an escaped blank line) keeps only its
    indentation: in a traceback that is a local variable or a source line, not worth a body."""
    if not _ESCAPED_MESSAGE.search(line):
        return line
    indent = line[: len(line) - len(line.lstrip())]
    return indent + BODY_MASK


def mask_ips(text: str) -> str:
    text = _IPV4.sub(IP_MASK, text)
    return _IPV6_CANDIDATE.sub(lambda m: IP_MASK if _is_ipv6(m[0]) else m[0], text)


def _is_ipv6(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).version == 6
    except ValueError:
        return False


def scrubber_for(secret: bytes) -> Scrubber:
    """The address hash key is derived from the console secret, never the secret itself."""
    return Scrubber(hmac.new(secret, b"mailscan crash report addresses", hashlib.sha256).digest())
