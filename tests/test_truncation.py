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


def nested(boundary: bytes, subtype: bytes, *parts: bytes) -> bytes:
    """A multipart entity: its Content-Type header, a blank line, and its parts closed."""
    head = b'Content-Type: multipart/%s; boundary="%s"\r\n\r\n' % (subtype, boundary)
    body = b"".join(b"--%s\r\n%s\r\n" % (boundary, p) for p in parts)
    return head + body + b"--%s--\r\n" % boundary


def leaf(text: bytes, kind: bytes = b"text/plain") -> bytes:
    return b"Content-Type: %s\r\n\r\n%s" % (kind, text)


TOP = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"


def defects(message: bytes) -> list[tuple[str, list]]:
    """Every defect the standard parser found, by the part that has it."""
    parsed = email.message_from_bytes(message)
    return [(part.get_content_type(), part.defects) for part in parsed.walk() if part.defects]


def test_a_cut_inside_a_nested_multipart_closes_it_before_the_outer_one():
    alternative = nested(b"in", b"alternative", leaf(lines(100)), leaf(lines(100), b"text/html"))
    message = TOP + nested(b"out", b"mixed", alternative, leaf(b"attachment"))
    limit = 3000
    cut = truncate(message, limit)
    assert len(cut) <= limit
    assert defects(message) == []  # the message was well-formed: any defect is the cut's
    assert defects(cut) == []
    assert cut.endswith(b"x" * 76 + b"\r\n--in--\r\n--out--\r\n")
    parsed = email.message_from_bytes(cut)
    assert parsed["Subject"] == "nested"
    [first] = parsed.get_payload()
    [plain] = first.get_payload()
    assert plain.get_payload().startswith("x" * 76 + "\r\n" + "x" * 76)


def test_the_last_whole_part_of_a_nested_multipart_is_kept_and_both_are_closed():
    alternative = nested(b"in", b"alternative", leaf(b"short text"), leaf(lines(200), b"text/html"))
    message = TOP + nested(b"out", b"mixed", alternative, leaf(b"attachment"))
    cut = truncate(message, 2000)
    assert cut.endswith(b"short text\r\n--in--\r\n--out--\r\n")
    assert defects(cut) == []
    [first] = email.message_from_bytes(cut).get_payload()
    assert [p.get_payload() for p in first.get_payload()] == ["short text"]


def test_a_cut_after_a_nested_multipart_closed_whole_keeps_it_and_closes_the_outer():
    alternative = nested(b"in", b"alternative", leaf(b"plain"), leaf(b"<p>html</p>", b"text/html"))
    message = TOP + nested(b"out", b"mixed", alternative, leaf(lines(200)))
    cut = truncate(message, 1500)
    assert cut.endswith(b"--in--\r\n\r\n--out--\r\n")
    assert defects(cut) == []
    assert [p.get_content_type() for p in email.message_from_bytes(cut).walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html",
    ]  # fmt: skip


def test_a_multipart_inside_an_enclosed_message_is_closed_too():
    inner = nested(b"in", b"alternative", leaf(lines(100)), leaf(b"html", b"text/html"))
    enclosed = b"Content-Type: message/rfc822\r\n\r\nSubject: forwarded\r\n" + inner
    message = TOP + nested(b"out", b"mixed", enclosed, leaf(b"comment"))
    cut = truncate(message, 3000)
    assert cut.endswith(b"x" * 76 + b"\r\n--in--\r\n--out--\r\n")
    assert len(cut) <= 3000
    assert defects(cut) == []


def random_entity(rng: random.Random, depth: int, serial: list[int]) -> bytes:
    serial[0] += 1
    if depth == 0 or rng.random() < 0.4:
        return leaf(b"leaf %d\r\n" % serial[0] + lines(rng.randint(0, 40), rng.randint(1, 90)))
    boundary = b"=_b%d" % serial[0]
    parts = [random_entity(rng, depth - 1, serial) for _ in range(rng.randint(1, 3))]
    return nested(boundary, rng.choice([b"mixed", b"alternative", b"related"]), *parts)


@pytest.mark.parametrize("seed", range(40))
def test_a_cut_nested_multipart_parses_without_defects(seed):
    rng = random.Random(seed)
    serial = [0]
    message = TOP + nested(b"=_top", b"mixed", *(random_entity(rng, 3, serial) for _ in range(3)))
    first_leaf = message[message.index(b"leaf ") :].split(b"\r\n")[0] + b"\r\n"
    # Room for the headers down to the first leaf's first line, and every closing delimiter.
    least = message.index(first_leaf) + len(first_leaf) + 4 * len(b"--=_b00--\r\n")
    limit = rng.randint(least, len(message))
    cut = truncate(message, limit)
    assert len(cut) <= limit
    assert defects(cut) == []
    assert cut.startswith(TOP)
    assert first_leaf in cut


def test_a_first_part_of_one_long_line_keeps_its_header_and_is_closed():
    message = HEAD + b"--=_b0und\r\nContent-Type: text/plain\r\n\r\n" + b"y" * 5000 + b"\r\n"
    cut = truncate(message + b"--=_b0und--\r\n", 1000)
    assert cut == HEAD + b"--=_b0und\r\nContent-Type: text/plain\r\n\r\n--=_b0und--\r\n"
    assert defects(cut) == []
