"""Rendering of generated messages: headers, text, HTML, replies, attachments (PDF-like, zip,
images), GTUBE spam, EICAR viruses and broken MIME, built as bytes by hand so that sizes are
predictable and broken forms are possible. The content comes from a random generator seeded
by the corpus seed, the message and the copy id: every copy is new, every run the same."""

from __future__ import annotations

import base64
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
BASE64_GROWTH = 78 / 57  # 76 characters and CRLF for every 57 bytes
_VOCABULARY = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "more can about up out them some could into than then do only other its time new two may "
    "over also after any first like these should well where most through between under while "
    "report meeting budget quarter project team update review draft schedule invoice order "
    "customer contract delivery server backup network release version support ticket deadline "
    "please thanks regards attached see below agree proposal figures numbers plan office week "
    "monday friday morning afternoon call minutes notes question answer issue change request "
    "price offer account payment travel hotel flight conference slides document summary"
)
WORDS = tuple(_VOCABULARY.split())
WORDS_8BIT = ("café", "Grüße", "naïve", "Zürich", "façade", "smörgåsbord", "déjà")
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
DOCUMENTATION_NETS = ("192.0.2", "198.51.100", "203.0.113")  # addresses reserved for examples
DOMAINS = ("example.test", "example.org", "mail.example.net", "corp.example.com")
BASE_DATE = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
LINE_WIDTH = 72


@dataclass(frozen=True)
class Spec:
    index: int
    kind: str
    text_bytes: int
    attachments: tuple[tuple[str, int], ...]  # (pdf | image | zip, raw bytes)
    variant: int  # picks a form of virus, broken MIME, charset


def render(spec: Spec, seed: int, copy_id: str) -> bytes:
    rng = random.Random(f"message:{seed}:{spec.index}:{copy_id}")
    head = _headers(spec, rng, copy_id)
    return RENDERERS[spec.kind](spec, rng, head)


# --- headers and text ------------------------------------------------------------------------


def _headers(spec: Spec, rng: random.Random, copy_id: str) -> list[bytes]:
    sender, rcpt = _address(rng), _address(rng)
    when = BASE_DATE + timedelta(minutes=spec.index, seconds=rng.randrange(60))
    return [
        b"X-Bench-Id: " + copy_id.encode(),
        *_received(rng, when),
        b"From: " + sender,
        b"To: " + rcpt,
        b"Subject: " + _sentence(rng, 3, 8).rstrip(b"."),
        b"Date: " + format_datetime(when).encode(),
        b"Message-ID: <%s.%x@%s>" % (copy_id.encode(), rng.getrandbits(48), sender.split(b"@")[1]),
        b"MIME-Version: 1.0",
    ]


def _received(rng: random.Random, when: datetime) -> list[bytes]:
    """One or two upstream hops, as all mail reaching a filter has. SpamAssassin needs them:
    a message with no Received line at all costs spamd about 13 times the CPU at 1 MB."""
    hops = []
    for hop in range(rng.randint(1, 2)):
        relay = f"mx{rng.randrange(1, 9)}.{rng.choice(DOMAINS)}".encode()
        address = f"{rng.choice(DOCUMENTATION_NETS)}.{rng.randrange(1, 255)}".encode()
        stamp = format_datetime(when - timedelta(seconds=2 * hop + 1)).encode()
        hops.append(
            b"Received: from %s (%s [%s])\r\n\tby gw.example.test (Postfix) with ESMTPS id %X;"
            b" %s" % (relay, relay, address, rng.getrandbits(40), stamp)
        )
    return hops


def _address(rng: random.Random) -> bytes:
    return f"{rng.choice(NAMES)}.{rng.randrange(1000)}@{rng.choice(DOMAINS)}".encode()


def _sentence(rng: random.Random, low: int = 6, high: int = 18) -> bytes:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    return (" ".join(words).capitalize() + ".").encode()


def text(rng: random.Random, size: int, eight_bit: bool = False) -> bytes:
    """Paragraphs of wrapped sentences, about ``size`` bytes, CRLF line ends."""
    lines, line, total = [], b"", 0
    while total < size:
        sentence = _sentence(rng)
        if eight_bit and rng.random() < 0.2:
            sentence = rng.choice(WORDS_8BIT).encode() + b" " + sentence
        if len(line) + len(sentence) > LINE_WIDTH:
            lines.append(line)
            total += len(line) + 2
            line = b""
            if rng.random() < 0.15:
                lines.append(b"")  # a new paragraph
        line = line + b" " + sentence if line else sentence
    lines.append(line)
    return b"\r\n".join(lines) + b"\r\n"


def _text_part(body: bytes, subtype: str = "plain") -> bytes:
    eight_bit = any(b > 127 for b in body)
    encoding = b"8bit" if eight_bit else b"7bit"
    return b"Content-Type: text/%s; charset=utf-8\r\nContent-Transfer-Encoding: %s\r\n\r\n%s" % (
        subtype.encode(),
        encoding,
        body,
    )


def _html(body: bytes, rng: random.Random) -> bytes:
    paragraphs = [p.replace(b"\r\n", b" ") for p in body.split(b"\r\n\r\n")]
    link = b'<a href="https://%s/%x">details</a>' % (
        rng.choice(DOMAINS).encode(),
        rng.getrandbits(32),
    )
    inner = b"\r\n".join(b"<p>%s</p>" % p for p in paragraphs)
    return b"<html><body>\r\n%s\r\n<p>%s</p>\r\n</body></html>\r\n" % (inner, link)


def _message(head: list[bytes], body: bytes, content_type: bytes | None = None) -> bytes:
    lines = [*head, b"Content-Type: " + content_type] if content_type else head
    return b"\r\n".join(lines) + b"\r\n" + body


def _multipart(head: list[bytes], subtype: str, parts: list[bytes], rng: random.Random) -> bytes:
    boundary = b"=_bench_%x" % rng.getrandbits(64)
    body = b"This is a multi-part message in MIME format.\r\n"
    for part in parts:
        body += b"\r\n--" + boundary + b"\r\n" + part
    body += b"\r\n--" + boundary + b"--\r\n"
    kind = b'multipart/%s; boundary="%s"' % (subtype.encode(), boundary)
    return _message(head, b"\r\n" + body, kind)


# --- attachments -----------------------------------------------------------------------------


def attachment_part(content_type: str, name: str, payload: bytes) -> bytes:
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (
        b'Content-Type: %s; name="%s"\r\nContent-Disposition: attachment; filename="%s"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n%s"
        % (content_type.encode(), name.encode(), name.encode(), encoded)
    )


def pdf_like(rng: random.Random, size: int) -> bytes:
    stream = rng.randbytes(max(0, size - 200))
    return (
        b"%%PDF-1.4\n%%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"3 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n%%%%EOF\n" % (len(stream), stream)
    )


def png_like(rng: random.Random, size: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", rng.randint(200, 2000), rng.randint(200, 2000), 8, 2, 0, 0, 0)
    pixels = rng.randbytes(max(0, size - 60))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def zip_of(rng: random.Random, size: int, members: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        notes = text(rng, max(200, size // 10))
        archive.writestr("notes.txt", notes, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("data.bin", rng.randbytes(max(0, size - size // 10)))
        for name, data in (members or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


ATTACHMENT_MAKERS: dict[str, tuple[str, str, Callable[[random.Random, int], bytes]]] = {
    "pdf": ("application/pdf", "report-{n}.pdf", pdf_like),
    "image": ("image/png", "photo-{n}.png", png_like),
    "zip": ("application/zip", "files-{n}.zip", zip_of),
}


def _attachments(spec: Spec, rng: random.Random) -> list[bytes]:
    parts = []
    for kind, size in spec.attachments:
        content_type, name, make = ATTACHMENT_MAKERS[kind]
        parts.append(
            attachment_part(content_type, name.format(n=rng.randrange(10_000)), make(rng, size))
        )
    return parts


# --- the kinds -------------------------------------------------------------------------------


def _plain(spec: Spec, rng: random.Random, head: list[bytes]) -> bytes:
    body = text(rng, spec.text_bytes, eight_bit=spec.variant % 4 == 0)
    eight_bit = any(b > 127 for b in body)
    encoding = b"8bit" if eight_bit else b"7bit"
    head = [*head, b"Content-Transfer-Encoding: " + encoding]
    return _message(head, b"\r\n" + body, b"text/plain; charset=utf-8")


def _html_mail(spec: Spec, rng: random.Random, head: list[bytes]) -> bytes:
    body = text(rng, spec.text_bytes, eight_bit=spec.variant % 4 == 0)
    parts = [_text_part(body), _text_part(_html(body, rng), "html")]
    return _multipart(head, "alternative", parts, rng)


def _reply(spec: Spec, rng: random.Random, head: list[bytes]) -> bytes:
    head = [h.replace(b"Subject: ", b"Subject: Re: ") for h in head]
    parent = b"<%x@%s>" % (rng.getrandbits(64), rng.choice(DOMAINS).encode())
    head += [b"In-Reply-To: " + parent, b"References: " + parent]
    new = text(rng, max(100, spec.text_bytes // 3))
    quoted = b"".join(b"> " + line + b"\r\n" for line in text(rng, spec.text_bytes).splitlines())
    wrote = b"\r\nOn Mon, 2 Nov 2026 at 09:%02d, %s wrote:\r\n" % (rng.randrange(60), _address(rng))
    body = b"\r\n" + new + wrote + quoted
    return _message([*head, b"Content-Transfer-Encoding: 7bit"], body, b"text/plain; charset=utf-8")


def _with_attachments(spec: Spec, rng: random.Random, head: list[bytes]) -> bytes:
    parts = [_text_part(text(rng, spec.text_bytes)), *_attachments(spec, rng)]
    return _multipart(head, "mixed", parts, rng)


def _spam(spec: Spec, rng: random.Random, head: list[bytes]) -> bytes:
    body = text(rng, spec.text_bytes) + b"\r\n" + GTUBE + b"\r\n"
    if spec.variant % 2:
        return _multipart(
            head, "alternative", [_text_part(body), _text_part(_html(body, rng), "html")], rng
        )
    return _message(head, b"\r\n" + body, b"text/plain; charset=us-ascii")


def _virus(spec: Spec, rng: random.Random, head: list[bytes]) -> bytes:
    """EICAR in one of three forms: plain text part (visible to the stub plugin too), a
    base64 attachment, or inside a zip."""
    form = spec.variant % 3
    if form == 0:
        payload = b'Content-Type: text/plain; name="eicar.txt"\r\n\r\n' + EICAR + b"\r\n"
    elif form == 1:
        payload = attachment_part("application/octet-stream", "eicar.com", EICAR)
    else:
        payload = attachment_part(
            "application/zip", "eicar.zip", zip_of(rng, 2_000, {"eicar.com": EICAR})
        )
    return _multipart(head, "mixed", [_text_part(text(rng, spec.text_bytes)), payload], rng)


def _malformed(spec: Spec, rng: random.Random, head: list[bytes]) -> bytes:
    """A message with attachments, then broken in one of five ways."""
    good = _with_attachments(spec, rng, head)
    return BREAKERS[spec.variant % len(BREAKERS)](good)


def _no_closing_boundary(message: bytes) -> bytes:
    end = message.rfind(b"--\r\n")
    return message[:end] + b"\r\n"


def _bad_base64(message: bytes) -> bytes:
    at = message.rfind(b"base64\r\n\r\n") + len(b"base64\r\n\r\n")
    return message[: at + 40] + b"!!**not-base64**\r\n" + message[at + 40 : -300] + b"A=\r\n"


def _no_boundary_parameter(message: bytes) -> bytes:
    start = message.find(b'; boundary="')
    end = message.find(b'"', start + len(b'; boundary="')) + 1
    return message[:start] + message[end:]


def _broken_headers(message: bytes) -> bytes:
    return message.replace(
        b"MIME-Version: 1.0\r\n",
        b"MIME-Version: 1.0\r\nThis line has no colon\r\nSubject2: caf\xe9 \xff raw 8-bit\r\n",
        1,
    )


def _nested_prefix_boundary(message: bytes) -> bytes:
    start = message.find(b'boundary="') + len(b'boundary="')
    outer = message[start : message.find(b'"', start)]
    inner = b'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n--%s\r\nbroken' % (
        outer[:-2],
        outer[:-2],
    )
    return message.replace(
        b"\r\n--" + outer + b"\r\n",
        b"\r\n--" + outer + b"\r\n" + inner + b"\r\n\r\n--" + outer + b"\r\n",
        1,
    )


BREAKERS = (
    _no_closing_boundary,
    _bad_base64,
    _no_boundary_parameter,
    _broken_headers,
    _nested_prefix_boundary,
)
RENDERERS: dict[str, Callable[[Spec, random.Random, list[bytes]], bytes]] = {
    "plain": _plain,
    "html": _html_mail,
    "reply": _reply,
    "attachment": _with_attachments,
    "spam": _spam,
    "virus": _virus,
    "malformed": _malformed,
    "sized": _with_attachments,
}
