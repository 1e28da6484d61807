"""What SpamAssassin is given of a big message: the head of it, cut where it still parses,
never larger than the limit."""

import email
import random

import pytest

from tasks.plugins.truncation import truncate

HEAD = (
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed;\r\n\tboundary="=_b0und"\r\n\r\n'
)


def part(text: bytes) -> bytes:
    return b"--=_b0und\r\nContent-Type: text/plain\r\n\r\n" + text + b"\r\n"


def multipart(*texts: bytes) -> bytes:
    return HEAD + b"preamble\r\n" + b"".join(part(t) for t in texts) + b"--=_b0und--\r\n"


def lines(count: int, width: int = 76) -> bytes:
    return b"\r\n".join(b"x" * width for _ in range(count))


def test_a_message_within_the_limit_is_untouched():
    message = multipart(b"one", b"two")
    assert truncate(message, len(message)) is message


def test_a_multipart_is_cut_after_the_last_whole_part_that_fits_and_closed():
    first, second, third = b"first part", lines(20), lines(200)
    message = multipart(first, second, third)
    limit = len(HEAD) + 2000
    cut = truncate(message, limit)
    assert len(cut) <= limit
    assert cut == HEAD + b"preamble\r\n" + part(first) + part(second) + b"--=_b0und--\r\n"
    parsed = email.message_from_bytes(cut)
    assert [p.get_payload() for p in parsed.get_payload()] == [first.decode(), second.decode()]
    assert parsed.defects == []  # closed properly: nothing left open for a parser to mend


def test_a_closing_delimiter_that_does_not_fit_moves_the_cut_a_part_earlier():
    message = multipart(b"first", b"second", lines(100))
    whole_two = len(HEAD + b"preamble\r\n" + part(b"first") + part(b"second"))
    cut = truncate(message, whole_two + len(b"--=_b0und--\r\n") - 1)
    assert cut.endswith(part(b"first") + b"--=_b0und--\r\n")


def test_a_first_part_too_large_is_cut_at_a_line_end_and_closed():
    message = multipart(lines(500), b"second")
    cut = truncate(message, 4000)
    assert len(cut) <= 4000
    assert cut.endswith(b"x" * 76 + b"\r\n--=_b0und--\r\n")
    [only] = email.message_from_bytes(cut).get_payload()
    assert only.get_payload().startswith("x" * 76)


def test_without_a_boundary_the_cut_is_at_the_last_line_end_before_the_limit():
    message = b"Subject: plain\r\n\r\n" + lines(100, width=50)
    cut = truncate(message, 1000)
    assert len(cut) <= 1000
    assert cut.endswith(b"x" * 50 + b"\r\n")
    assert message.startswith(cut)
    assert len(message[len(cut) :].split(b"\r\n")[0]) == 50  # the next line was whole


def test_headers_alone_over_the_limit_are_cut_at_a_line_end():
    head = b"".join(b"Received: from host%d\r\n" % n for n in range(100))
    body = b"--x\r\n\r\nbody\r\n--x--\r\n"
    message = head + b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + body
    cut = truncate(message, 500)
    assert len(cut) <= 500
    assert message.startswith(cut)
    assert cut.endswith(b"\r\n")
    assert cut.count(b"\r\n") == cut.count(b"Received:")


def test_a_long_last_line_is_left_out_whole():
    message = b"Subject: one long line\r\n\r\n" + b"y" * 5000
    assert truncate(message, 1000) == b"Subject: one long line\r\n\r\n"


def test_a_first_line_longer_than_the_limit_is_cut_at_the_limit():
    message = b"X-Long: " + b"y" * 5000 + b"\r\n\r\nbody\r\n"
    assert truncate(message, 1000) == message[:1000]


def test_bare_line_feeds_and_an_unquoted_boundary_are_understood():
    message = (
        b"Content-Type: multipart/alternative; boundary=plain\n\n"
        b"--plain\n\nfirst\n--plain\n\n" + b"z\n" * 1000 + b"--plain--\n"
    )
    cut = truncate(message, 200)
    head = b"Content-Type: multipart/alternative; boundary=plain\n\n"
    assert cut == head + b"--plain\n\nfirst\n--plain--\n"


@pytest.mark.parametrize("seed", range(30))
def test_the_result_is_never_larger_than_the_limit_and_starts_the_message(seed):
    rng = random.Random(seed)
    texts = [lines(rng.randint(0, 80), rng.randint(1, 120)) for _ in range(rng.randint(1, 6))]
    message = multipart(*texts) if seed % 3 else b"Subject: s\r\n\r\n" + b"\r\n".join(texts)
    limit = rng.randint(1, len(message) + 10)
    cut = truncate(message, limit)
    assert len(cut) <= limit
    kept = cut[: -len(b"--=_b0und--\r\n")] if cut.endswith(b"--=_b0und--\r\n") else cut
    assert message.startswith(kept)
