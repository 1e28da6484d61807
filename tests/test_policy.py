"""The decision table: what a sender and a recipient see for each pair of verdicts."""

from dataclasses import replace

from mailserver.front.policy import SPAM_NOT_AWAITED, decide
from tasks.settings import load_settings
from tests.pool_verdicts import av_verdict as av
from tests.pool_verdicts import banned_verdict
from tests.pool_verdicts import spam_verdict as spam

SETTINGS = load_settings({})


def test_clean_mail_is_delivered_with_scan_headers():
    decision = decide(av("clean"), spam("ham"), SETTINGS, client_waiting=True)
    assert decision.action == "deliver"
    assert decision.reply.startswith("250")
    assert "X-Spam-Flag: NO" in decision.header_lines
    assert "X-Virus-Status: Clean" in decision.header_lines


def test_virus_is_refused_to_a_waiting_client_with_its_name():
    decision = decide(av("infected", "Eicar-Test"), spam("ham"), SETTINGS, client_waiting=True)
    assert decision.action == "reject"
    assert decision.reply.startswith("550 5.7.1")
    assert "Eicar-Test" in decision.reply


def test_virus_is_quarantined_when_nobody_waits():
    decision = decide(av("infected", "Eicar-Test"), spam("ham"), SETTINGS, client_waiting=False)
    assert decision.action == "quarantine"
    assert "X-Virus-Name: Eicar-Test" in decision.header_lines


def test_virus_after_the_queue_is_dropped_when_so_set_and_never_refused():
    dropping = replace(SETTINGS, post_queue_virus="discard")
    decision = decide(av("infected", "Eicar-Test"), spam("ham"), dropping, client_waiting=False)
    assert decision.action == "discard"
    assert decision.reason == "virus Eicar-Test"
    assert decision.reply.startswith("250")


def test_a_failed_virus_scan_never_delivers_by_default():
    for result in (None, av("error")):
        decision = decide(result, spam("ham"), SETTINGS, client_waiting=True)
        assert decision.action == "tempfail"
        assert decision.reply.startswith("451")


def test_failed_virus_scan_with_deliver_tagged_says_so_in_a_header():
    settings = SETTINGS.with_pool("av", failure_policy="deliver-tagged")
    decision = decide(None, spam("ham"), settings, client_waiting=True)
    assert decision.action == "deliver"
    assert any("failed" in line for line in decision.header_lines)


def test_failed_spam_scan_is_delivered_tagged_by_default():
    decision = decide(av("clean"), None, SETTINGS, client_waiting=True)
    assert decision.action == "deliver"
    assert "X-Spam-Status: Unknown, scan failed" in decision.header_lines


def test_spam_is_tagged_and_quarantined_above_the_level():
    tagged = decide(av("clean"), spam("spam", 7.0), replace(SETTINGS, spam_subject_tag="[SPAM]"),
                    client_waiting=True)  # fmt: skip
    assert tagged.action == "deliver"
    assert tagged.tag_subject
    assert "X-Spam-Flag: YES" in tagged.header_lines
    held = decide(av("clean"), spam("spam", 12.0), replace(SETTINGS, spam_quarantine_score=10.0),
                  client_waiting=True)  # fmt: skip
    assert held.action == "quarantine"


def test_a_virus_quarantined_without_its_spam_verdict_says_why_it_was_not_spam_scanned():
    decision = decide(av("infected", "Eicar-Test"), SPAM_NOT_AWAITED, SETTINGS, False)
    assert decision.action == "quarantine"
    assert "X-Spam-Status: No, not scanned (a virus was found)" in decision.header_lines
    assert "X-Virus-Status: Infected" in decision.header_lines


def test_a_banned_attachment_is_refused_to_a_waiting_client_naming_the_part():
    found = banned_verdict("photos.zip/holiday.jpg", "content type application/x-dosexec")
    decision = decide(found, SPAM_NOT_AWAITED, SETTINGS, client_waiting=True)
    assert decision.action == "reject"
    assert decision.reply == "550 5.7.1 Message refused: banned attachment photos.zip/holiday.jpg"
    assert decision.reason == "banned photos.zip/holiday.jpg (content type application/x-dosexec)"


def test_a_banned_attachment_is_quarantined_with_headers_naming_part_and_rule():
    found = banned_verdict("Rechnung\u00e9.pdf.exe", "double extension .pdf.exe")
    decision = decide(found, spam("ham"), SETTINGS, client_waiting=False)
    assert decision.action == "quarantine"
    assert "X-Virus-Status: Banned" in decision.header_lines
    assert (
        "X-Banned-Attachment: Rechnung\u00e9.pdf.exe (double extension .pdf.exe)"
        in decision.header_lines
    )
    # A reply line is ASCII whatever the name.
    waiting = decide(found, spam("ham"), SETTINGS, client_waiting=True)
    assert waiting.reply.endswith("banned attachment Rechnung?.pdf.exe")


def test_a_virus_outranks_a_banned_attachment_in_the_av_pool():
    from tasks.plugins.base import Verdict
    from tasks.runner import combine

    banned = Verdict("banned", "banned", part="a.exe", rules=("extension .exe",))
    assert combine("av", [Verdict("clamav", "infected", virus="Eicar"), banned]) == "infected"
    assert combine("av", [Verdict("clamav", "error"), banned]) == "banned"
    assert combine("av", [Verdict("clamav", "clean"), banned]) == "banned"
