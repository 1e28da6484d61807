"""Malformed MIME through the real front and pools: whatever the structure, encodings and
archives a message claims, the front answers it, no service dies, each 250 is delivered
once, and nothing stays in the spool.

The messages are made by hypothesis: nested multiparts with lost or mismatched boundaries,
broken base64 and quoted-printable, undeclared 8-bit bytes, encoded words that do not
decode, archives whose deflate data is corrupt, parts without headers."""

from __future__ import annotations

import base64
import io
import smtplib
import time
import zipfile

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.conftest import find_delivered, wait_for

CRLF = b"\r\n"
# Any byte but the line ends: bare CR and LF are refused by the front on their own
# (tests/test_edge_data.py); here the lines are well formed and the MIME is not.
LINE_BYTES = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
TOKENS = st.sampled_from(
    [b"text/plain", b"multipart/mixed", b"multipart/alternative", b"application/zip",
     b"message/rfc822", b"text/html", b"image/png", b"multipart/", b"", b"\x00/\xff"]
)  # fmt: skip
ENCODINGS = st.sampled_from([b"base64", b"quoted-printable", b"7bit", b"8bit", b"x-uue", b"b@se64"])


@st.composite
def broken_zip(draw: st.DrawFn) -> bytes:
    """A zip whose member's deflate data is cut or overwritten."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(draw(st.sampled_from(["a.txt", "b.exe", "../x", "é.doc"])), b"x" * 4000)
    data = bytearray(buffer.getvalue())
    cut = draw(st.integers(30, len(data) - 1))
    data[cut : cut + 8] = draw(st.binary(min_size=8, max_size=8))
    return bytes(data[: draw(st.integers(cut, len(data)))])


@st.composite
def body_text(draw: st.DrawFn, encoding: bytes) -> bytes:
    kind = draw(st.sampled_from(["lines", "bad-base64", "zip", "bad-qp", "uuencode"]))
    if kind == "zip" or (kind == "bad-base64" and draw(st.booleans())):
        raw = draw(broken_zip()) if kind == "zip" else draw(st.binary(max_size=300))
        encoded = base64.encodebytes(raw)
        encoded = encoded[: draw(st.integers(0, len(encoded)))]  # cut anywhere
        return encoded.replace(b"\n", CRLF) + (b"!!==*" if encoding == b"base64" else b"")
    if kind == "bad-qp":
        return CRLF.join([b"caf=E9 =ZZ =\t", b"=", b"soft =" * draw(st.integers(0, 40))])
    if kind == "uuencode":
        return CRLF.join([b"begin 644 x.exe", draw(LINE_BYTES), b"`", b"end"])
    return CRLF.join(draw(st.lists(LINE_BYTES, max_size=6)))


@st.composite
def part(draw: st.DrawFn, depth: int) -> bytes:
    headers = []
    content_type = draw(TOKENS)
    boundary = draw(st.sampled_from([b"b", b"b" * 80, b"", b'"unterminated', b"=_\xff"]))
    if draw(st.booleans()):
        headers.append(b"Content-Type: " + content_type + b'; boundary="' + boundary + b'"')
    encoding = draw(ENCODINGS)
    if draw(st.booleans()):
        headers.append(b"Content-Transfer-Encoding: " + encoding)
    if draw(st.booleans()):
        name = draw(st.sampled_from([b"=?utf-8?B?***?=", b"a.zip", b"\xff\xfe.exe", b""]))
        headers.append(b'Content-Disposition: attachment; filename="' + name + b'"')
    if content_type.startswith(b"multipart") and depth < 5:
        children = draw(st.lists(part(depth + 1), max_size=3))
        # Boundaries that match, that are missing, or that never close.
        closing = draw(st.sampled_from([b"--" + boundary + b"--", b"", b"--other--"]))
        body = CRLF.join([b"--" + boundary + CRLF + child for child in children] + [closing])
    else:
        body = draw(body_text(encoding))
    return CRLF.join(headers) + CRLF + CRLF + body


@st.composite
def malformed_message(draw: st.DrawFn) -> bytes:
    subject = draw(
        st.sampled_from([b"=?utf-8?Q?=E9=?=", b"=?x-unknown?B?AAAA?=", b"\xe9t\xe9", b""])
    )
    top = [b"From: <fuzz@example.test>", b"To: bob@example.test", b"Subject: " + subject]
    top += [b"MIME-Version: 1.0"] * draw(st.integers(0, 2))
    return CRLF.join(top) + CRLF + draw(part(0)) + CRLF


def send_raw(port: int, marker: bytes, message: bytes) -> int:
    """The reply code to DATA; 0 when the front gave none (it must always give one)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            client.ehlo("fuzz.example.test")
            client.mail("fuzz@example.test")
            client.rcpt("bob@example.test")
            code, _ = client.data(b"X-Fuzz-Id: " + marker + CRLF + message)
            return code
    except (smtplib.SMTPException, OSError):
        return 0


def test_malformed_mime_is_answered_and_nothing_is_lost_or_stuck(stack, settings):
    before = {name: stack.pid(name) for name in stack.started}
    codes: dict[bytes, int] = {}

    @settings_for_the_stack
    @given(malformed_message())
    def send_one(message: bytes) -> None:
        marker = f"fuzz-{time.time_ns()}".encode()
        codes[marker] = send_raw(settings.smtp_port, marker, message)
        assert codes[marker] in (250, 550, 552, 554), (codes[marker], message[:400])

    send_one()
    assert {name: stack.pid(name) for name in stack.started} == before, "a service died"
    assert not stack.exited()
    wait_for(lambda: not any((settings.spool_dir / "queue").iterdir()), 60, "an empty spool")
    for marker, code in codes.items():
        expected = 1 if code == 250 else 0
        assert len(find_delivered(settings.maildir, b"X-Fuzz-Id: " + marker)) == expected


settings_for_the_stack = hypothesis_settings(
    max_examples=40,
    deadline=None,
    database=None,  # each run draws afresh; a failure prints the message it sent
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
