"""Header lines: in the message's own line endings, folded like SpamAssassin's, and safe."""

from mailserver.front import headers
from mailserver.front.spool import Envelope, SpoolEntry
from tasks.wire.verdicts import EngineVerdict, PoolVerdict


def entry(helo="mx.example.test", mail_from="alice@example.test"):
    envelope = Envelope(mail_from, ("bob@example.test",), "192.0.2.7", helo, 1_790_000_000.0)
    return SpoolEntry("0123456789abcdef01234567", envelope, b"Subject: hi\r\n\r\nbody\r\n")


def test_received_line_names_client_helo_and_spool_id():
    line = headers.received(entry(), "scanner.example.test")
    assert line.startswith("Received: from mx.example.test ([192.0.2.7])")
    assert "id 0123456789abcdef01234567" in line


def test_client_text_cannot_inject_header_lines():
    line = headers.received(entry(helo="evil\r\nX-Spam-Flag: NO"), "scanner")
    assert "\r\nX-Spam-Flag" not in line
    assert "\r\n" not in headers.return_path(entry(mail_from="a@b\r\nBcc: c@d"))


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
