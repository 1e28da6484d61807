"""What a message holds that must never leave the server, written in every form a crashdump
can carry it: addresses (plain, quoted local parts over 64 characters, split across lines,
URL-encoded once or twice, as HTML entities, backslash escapes, a fullwidth "@"), subjects
(header lines, folded, dict items with str or bytes keys, header tuples, keyword arguments),
IP addresses, host names, bodies, attachment names and base64 content.

Each secret is kept as a ``Planted``: what to look for in a report, and whether the scrubber
claims the form it was written in (``claimed``). The default report must hold none of them;
the details none of the claimed ones. ``canonical`` undoes every encoding used here, so a
secret found in any of its forms is found.
"""

from __future__ import annotations

import base64
import html
import re
import string
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import unquote

from hypothesis import strategies as st


@dataclass
class Planted:
    kind: str
    needle: str  # canonical form
    claimed: bool = True


@dataclass
class Secrets:
    planted: list[Planted] = field(default_factory=list)

    def add(self, kind: str, value: str, claimed: bool = True) -> None:
        self.planted.append(Planted(kind, canonical(value), claimed))


ALNUM = string.ascii_letters + string.digits
NOT_HEX = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"
# A letter that is not hex (ids and hashes are hex) and a digit: never a word of the report's
# own (a key, a mask, a version name) that a search would find wherever it looks.
word = st.builds(
    "{}{}{}{}".format,
    st.text(ALNUM, max_size=5),
    st.sampled_from(NOT_HEX),
    st.sampled_from(string.digits),
    st.text(ALNUM, min_size=6, max_size=8),
)
TLDS = ("com", "net", "org", "de", "io", "example", "test", "co", "uk")
host_names = st.builds(
    lambda a, b, tld: f"{a}.{b}.{tld}".lower(), word, word, st.sampled_from(TLDS)
)
quoted_long_local = st.lists(word, min_size=7, max_size=9).map(lambda w: '"' + " ".join(w) + '"')
local_parts = st.one_of(
    word,
    st.builds("{}.{}".format, word, word),
    st.builds("{}+{}".format, word, word),
    quoted_long_local,
)
addresses = st.one_of(st.builds("{}@{}".format, local_parts, host_names), st.emails())
AT_FORMS = ("@", "%40", "%2540", "&#64;", "&#x40;", "\\x40", "\\u0040", "\uff20")
SPLITS = ("", "at", "before", "soft")
ips = st.ip_addresses().map(str).filter(lambda ip: len(ip) >= 7)
EXTENSIONS = ("pdf", "docx", "xlsx", "zip")
attachments = st.builds("{}.{}".format, word, st.sampled_from(EXTENSIONS))


@st.composite
def written_address(draw: st.DrawFn, secrets: Secrets, in_header: bool = False) -> str:
    """An address in one of its forms, some split across lines (in a header, only where a
    header can be folded)."""
    address = draw(addresses)
    secrets.add("address", address)
    local, _, domain = address.rpartition("@")
    at = draw(st.sampled_from(AT_FORMS))
    split = draw(st.sampled_from(SPLITS[:2] if in_header else SPLITS))
    if split == "at":  # a folded header
        return f"{local}{at}\r\n {domain}"
    if split == "before":
        return f"{local}\n{at}{domain}"
    if split == "soft" and len(domain) > 2:  # quoted-printable's soft line break
        return f"{local}{at}{domain[:2]}=\r\n{domain[2:]}"
    return f"{local}{at}{domain}"


@st.composite
def subjects(draw: st.DrawFn, secrets: Secrets) -> str:
    words = draw(st.lists(word, min_size=1, max_size=3))
    for each in words:
        secrets.add("subject", each)
    return " ".join(words)


@st.composite
def header_block(draw: st.DrawFn, secrets: Secrets) -> str:
    """Headers of any names, a blank line, then a body or a base64 attachment."""
    names = draw(st.lists(st.sampled_from(HEADERS), min_size=2, max_size=5, unique=True))
    lines = [draw(_header(name, secrets)) for name in names]
    return "\r\n".join(lines) + "\r\n\r\n" + draw(_content(secrets))


HEADERS = ("From", "To", "Subject", "Thread-Topic", "Received", "X-Relay", "Content-Type",
           "Content-Disposition")  # fmt: skip


@st.composite
def _header(draw: st.DrawFn, name: str, secrets: Secrets) -> str:
    if name in ("From", "To"):
        return f"{name}: Someone <{draw(written_address(secrets, in_header=True))}>"
    if name == "Subject":
        first, *rest = draw(subjects(secrets)).split(" ")
        return f"Subject: {first}" + "".join(f"\r\n {w}" for w in rest)  # folded
    if name == "Thread-Topic":
        return f"Thread-Topic: {draw(subjects(secrets))}"
    if name in ("Received", "X-Relay"):
        host, ip = draw(_planted(host_names, "host", secrets)), draw(_planted(ips, "ip", secrets))
        return f"{name}: from {host} ({host} [{ip}]) by mx"
    attachment = draw(_planted(attachments, "attachment", secrets))
    if name == "Content-Type":
        return f'Content-Type: application/octet-stream; name="{attachment}"'
    return f'Content-Disposition: attachment; filename="{attachment}"'


@st.composite
def _planted(draw: st.DrawFn, strategy: st.SearchStrategy[str], kind: str, secrets: Secrets) -> str:
    value = draw(strategy)
    secrets.add(kind, value)
    return value


@st.composite
def _content(draw: st.DrawFn, secrets: Secrets) -> str:
    if draw(st.booleans()):
        sentence = draw(st.lists(word, min_size=3, max_size=6))
        for each in sentence:
            secrets.add("body", each)
        return " ".join(sentence) + "\r\n"
    encoded = base64.encodebytes(draw(st.binary(min_size=60, max_size=200))).decode()
    for line in encoded.split():
        # A short line of hex letters only ("AAAA") is in any id or hash of a report by
        # chance, as the words' non-hex letter says: not a piece of the message to look for.
        if not set(line.lower()) <= set(string.hexdigits):
            secrets.add("base64", line, claimed=len(line) >= 40)
    return encoded.replace("\n", "\r\n")


@st.composite
def locals_with_secrets(draw: st.DrawFn, secrets: Secrets) -> str:
    """Python source of a value a plugin holds: dicts with str or bytes keys, header tuples,
    keyword arguments; shown in a traceback's source line or in an exception's message."""
    subject, address = draw(subjects(secrets)), draw(written_address(secrets))
    form = draw(st.integers(0, 4))
    if form == 0:
        return f"{{'subject': {subject!r}, 'rcpt': {address!r}}}"
    if form == 1:
        return f"{{b'subject': {subject.encode()!r}, b'to': {address.encode()!r}}}"
    if form == 2:
        return f"[('From', {address!r}), ('Subject', {subject!r})]"
    host, ip = draw(_planted(host_names, "host", secrets)), draw(_planted(ips, "ip", secrets))
    if form == 3:
        return f"dict(subject={subject!r}, helo={host!r}, peer={ip!r}, to={address!r})"
    return f"('relay', {host!r}, {ip!r}, {address!r})"


@st.composite
def free_text(draw: st.DrawFn, secrets: Secrets) -> str:
    """An exception message or a note: text about a message, in plain or escaped form."""
    form = draw(st.integers(0, 5))
    if form < 3:
        block = draw(header_block(secrets))
        return [f"could not scan:\n{block}", f"bad part {block.encode()!r}",
                f"bad part {block!r}"][form]  # fmt: skip
    if form == 5:
        return draw(locals_with_secrets(secrets))
    host, ip = draw(_planted(host_names, "host", secrets)), draw(_planted(ips, "ip", secrets))
    if form == 3:
        return f"connect to {host}:25 ({ip}) refused for {draw(written_address(secrets))}"
    return f"fetch https://{host}/inbox failed, helo={host}"


@st.composite
def bare_words(draw: st.DrawFn, secrets: Secrets) -> str:
    """Words of a subject or body with nothing to say what they are: no scrubber can know
    them, so only the default report can promise they stay here."""
    words = draw(st.lists(word, min_size=1, max_size=4))
    for each in words:
        secrets.add("bare", each, claimed=False)
    return " ".join(words)


def scanner_output(attachment: str) -> bytes:
    return f"/tmp/scan/message.eml/{attachment}: Heuristics.Encrypted.Zip FOUND\n".encode()


_ESCAPED_UTF8 = re.compile(r"(?:\\x[89a-fA-F][0-9a-fA-F])+")


def canonical(text: str) -> str:
    """``text`` with every encoding used above undone, line breaks and spaces gone, lower
    case: a secret in any of its forms reads as itself."""
    text = _ESCAPED_UTF8.sub(lambda m: _utf8(m[0]), text)
    text = html.unescape(text)
    for _ in range(3):
        text = unquote(text)
    for escaped, plain in (("\\x40", "@"), ("\\u0040", "@"), ("\\'", "'"), ('\\"', '"')):
        text = text.replace(escaped, plain)
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"=(?:\r?\n|\\r\\n|\\n)", "", text)
    text = re.sub(r"\\[rnt]|\s", "", text)
    return text.lower()


def _utf8(escaped: str) -> str:
    try:
        return bytes.fromhex(escaped.replace("\\x", "")).decode()
    except UnicodeDecodeError:
        return escaped
