"""Header lines: in the message's own line endings, folded like SpamAssassin's, and safe."""

import re

import pytest

from mailserver.front import headers
from mailserver.front.spool import Envelope, SpoolEntry
from tasks.wire.verdicts import EngineVerdict, PoolVerdict


def entry(helo="mx.example.test", mail_from="alice@example.test"):
    envelope = Envelope(mail_from, ("bob@example.test",), "192.0.2.7", helo, 1_790_000_000.0)
    return SpoolEntry("0123456789abcdef01234567", envelope, b"Subject: hi\r\n\r\nbody\r\n")


def test_received_line_names_client_helo_and_spool_id():
    line = headers.received(entry(), "scanner.example.test")
    assert line.startswith("Received: from mx.example.test (unknown [192.0.2.7])\r\n")
    assert "by scanner.example.test (mailscan) with ESMTP id 0123456789abcdef01234567;" in line


@pytest.mark.parametrize(
    "helo",
    ["x ([10.9.8.7])", "[10.9.8.7]", "[IPv6:2001:db8::9]", "10.9.8.7", "(x [10.9.8.7])", ""],
)
def test_the_first_bracketed_address_of_received_is_the_peers_whatever_the_helo(helo):
    line = headers.received(entry(helo=helo), "scanner")
    assert re.search(r"\[([^\]]*)\]", line).group(1) == "192.0.2.7", line
    assert line.startswith("Received: from ")
    assert line.split()[3] == "(unknown"


def test_an_address_literal_helo_is_written_without_its_brackets():
    assert headers.received(entry(helo="[10.9.8.7]"), "s").startswith(
        "Received: from 10.9.8.7 (unknown [192.0.2.7])"
    )
    ipv6 = headers.received(entry(helo="[IPv6:2001:db8::9]"), "s")
    assert ipv6.startswith("Received: from IPv6:2001:db8::9 (unknown [192.0.2.7])")


def test_client_text_cannot_inject_header_lines():
    line = headers.received(entry(helo="evil\r\nX-Spam-Flag: NO"), "scanner")
    assert "\r\nX-Spam-Flag" not in line
    for forged in ("a@b\r\nBcc: c@d", "a@b\nBcc: c@d", "a@b\x00\rBcc: c@d"):
        field = headers.return_path(entry(mail_from=forged))
        assert field == "Return-Path: <a@bBcc: c@d>", field


def test_the_null_sender_is_an_empty_return_path():
    assert headers.return_path(entry(mail_from="<>")) == "Return-Path: <>"
    assert headers.return_path(entry(mail_from="")) == "Return-Path: <>"


def test_engine_text_cannot_inject_header_lines():
    engine = EngineVerdict("clamav", "infected", virus="Evil\r\nX-Virus-Status: Clean")
    av = PoolVerdict("av", "infected", (engine,))
    lines = headers.virus_headers(av)
    assert all("\r" not in line and "\n" not in line for line in lines), lines
    assert headers.virus_name(av) == "EvilX-Virus-Status: Clean"
    spam = EngineVerdict("spamassassin", "spam", score=9.0, threshold=5.0, rules=("A\nB", "C"))
    status = headers.spam_headers(PoolVerdict("spam", "spam", (spam,)))[-1]
    assert status.endswith("tests=AB,C")


def test_prepend_keeps_the_line_endings_of_the_message():
    crlf = headers.prepend(b"A: 1\r\n\r\nx\r\n", ["X-Test: 1", "X-Two: 2\r\n\tfolded"])
    lf = headers.prepend(b"A: 1\n\nx\n", ["X-Test: 1"])
    assert crlf.startswith(b"X-Test: 1\r\nX-Two: 2\r\n\tfolded\r\nA: 1")
    assert lf == b"X-Test: 1\nA: 1\n\nx\n"


def test_long_spam_status_is_folded_at_commas():
    rules = [f"RULE_NUMBER_{n}" for n in range(20)]
    engine = EngineVerdict("spamassassin", "spam", score=9.5, threshold=5.0, rules=tuple(rules))
    status = headers.spam_headers(PoolVerdict("spam", "spam", (engine,)))[-1]
    assert all(len(line) <= 80 for line in status.split("\r\n"))
    assert status.replace(",\r\n\t", ",").endswith(",".join(rules))


def test_subject_tag_is_added_once_and_only_in_the_header():
    message = b"Subject: offer\r\nFrom: a@b\r\n\r\nSubject: body line\r\n"
    tagged = headers.tag_subject(message, "[SPAM]")
    assert tagged.startswith(b"Subject: [SPAM] offer\r\n")
    assert tagged.endswith(b"\r\nSubject: body line\r\n")
    assert headers.tag_subject(b"From: a@b\n\nbody\n", "[SPAM]").startswith(b"Subject: [SPAM]\n")


def test_spam_status_says_when_spamassassin_saw_the_head_of_the_message_alone():
    engine = EngineVerdict("spamassassin", "spam", score=1000.0, threshold=5.0, rules=("GTUBE",),
                           scanned_bytes=511_980, message_bytes=2_300_000)  # fmt: skip
    status = headers.spam_headers(PoolVerdict("spam", "spam", (engine,)))[-1]
    assert status.replace(",\r\n\t", ",") == (
        "X-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE "
        "(first 511980 bytes of 2300000 scanned)"
    )
    whole = EngineVerdict("spamassassin", "ham", score=0.0, threshold=5.0)
    assert "scanned" not in headers.spam_headers(PoolVerdict("spam", "ham", (whole,)))[-1]


def test_a_skipped_spam_scan_says_why_in_its_own_words():
    engine = EngineVerdict(
        "spamassassin", "skipped", detail="not scanned: the av pool found a virus"
    )
    status = headers.spam_headers(PoolVerdict("spam", "skipped", (engine,)))
    assert status == ["X-Spam-Status: No, not scanned (the av pool found a virus)"]
