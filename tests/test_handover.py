"""Every spool entry has a bounded life: whatever goes wrong while a decided message is
handed on is an outcome with a reason (delivered, tried again later without a rescan,
dead-lettered), never an entry left to be scanned again. Unit tests of our own logic,
with a stand-in for the next hop."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mailserver.front import headers
from mailserver.front.delivery import MaildirDelivery
from mailserver.front.pipeline import Pipeline
from mailserver.front.policy import SPAM_NOT_AWAITED, Decision
from mailserver.front.quarantine import Quarantine
from mailserver.front.retries import LONGEST_WAIT_S, Attempts
from mailserver.front.spool import Envelope, Spool
from tasks.errors import ConfigError, DeliveryError, RecipientsRefused, SpoolEntryCorrupt
from tasks.settings import load_settings
from tasks.wire.verdicts import to_records
from tests.pool_verdicts import av_verdict, spam_verdict

CLEAN = Decision("deliver", "250 2.0.0 Ok: delivered", "clean", ["X-Virus-Status: Clean"])
VERDICTS = {
    "av": av_verdict("clean", worker="av@mx"),
    "spam": spam_verdict("ham", worker="spam@mx"),
}
MESSAGE = b"Subject: hello\r\n\r\nbody\r\n"


class NextHop:
    """Stands in for a relay: each call answers with the next of ``answers`` (an exception
    to raise, or None for taken by every recipient) and records who it was sent to."""

    def __init__(self, *answers: Exception | None) -> None:
        self.answers, self.sent_to = list(answers), []

    def deliver(self, entry_id, envelope, message, first=False, defer_sync=False, top=b""):
        self.sent_to.append(envelope.rcpt_tos)
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return None


def _pipeline(root: Path, delivery, **env: str) -> Pipeline:
    environ = {"MAILSCAN_VAR_DIR": str(root / "var"), "MAILSCAN_DELIVERY_RETRY_S": "60"}
    settings = load_settings({**environ, **{f"MAILSCAN_{k.upper()}": v for k, v in env.items()}})
    spool = Spool(root / "spool")
    # No broker and no scan: only the acting half of the pipeline runs here.
    return Pipeline(settings, None, spool, None, None, delivery, Quarantine(root / "q"))


def _entry(pipeline: Pipeline, *rcpts: str):
    envelope = Envelope("alice@example.test", rcpts or ("bob@example.test",))
    return pipeline.spool.commit(envelope, MESSAGE)


def test_an_unexpected_delivery_error_is_kept_for_a_later_attempt_not_a_rescan(tmp_path):
    hop = NextHop(RuntimeError("a bug in the delivery"))
    pipeline = _pipeline(tmp_path, hop)
    entry = _entry(pipeline)
    outcome = pipeline._act(entry, CLEAN, VERDICTS, client_waiting=False)
    assert outcome.action == "deferred"
    kept = pipeline.handover.retries.get(entry.id)
    assert kept is not None
    assert kept.verdicts == VERDICTS
    assert kept.decision == CLEAN
    assert kept.waiting == ("bob@example.test",)
    assert 59 < kept.next_at - time.time() <= 60  # MAILSCAN_DELIVERY_RETRY_S
    assert pipeline.spool.pending() == [entry.id]

    again = pipeline.handover.retry(pipeline.spool.load(entry.id), kept)
    assert again.action == "deliver"
    assert pipeline.spool.pending() == []
    assert pipeline.handover.retries.get(entry.id) is None


def test_the_wait_doubles_up_to_an_hour():
    attempts = Attempts(CLEAN, {}, ("b@x",))
    waits = []
    for _ in range(10):
        attempts = attempts.after([], {}, "away", 1000.0, 60.0)
        waits.append(attempts.next_at - 1000.0)
    assert waits[:4] == [60.0, 120.0, 240.0, 480.0]
    assert waits[-1] == LONGEST_WAIT_S


def test_a_partial_refusal_is_250_to_the_waiting_client_and_only_the_refused_are_retried(
    tmp_path,
):
    refused = RecipientsRefused({"later@example.test": (450, "4.2.1 try later")})
    hop = NextHop(refused, None)
    pipeline = _pipeline(tmp_path, hop)
    entry = _entry(pipeline, "bob@example.test", "later@example.test")
    outcome = pipeline._act(entry, CLEAN, VERDICTS, client_waiting=True)
    assert outcome.reply.startswith("250")
    kept = pipeline.handover.retries.get(entry.id)
    assert kept.delivered == ("bob@example.test",)
    assert kept.waiting == ("later@example.test",)

    pipeline.handover.retry(pipeline.spool.load(entry.id), kept)
    assert hop.sent_to == [("bob@example.test", "later@example.test"), ("later@example.test",)]
    assert pipeline.spool.pending() == []


def test_a_recipient_refused_for_good_is_dead_lettered_with_why(tmp_path):
    hop = NextHop(RecipientsRefused({"nobody@example.test": (550, "5.1.1 no such user")}))
    pipeline = _pipeline(tmp_path, hop)
    entry = _entry(pipeline, "bob@example.test", "nobody@example.test")
    outcome = pipeline._act(entry, CLEAN, VERDICTS, client_waiting=True)
    assert outcome.reply.startswith("250")
    assert outcome.action == "dead-letter"
    dead = tmp_path / "spool" / "dead"
    record = json.loads((dead / f"{entry.id}.json").read_text())
    assert record["delivered"] == ["bob@example.test"]
    assert record["failed"] == {"nobody@example.test": "550 5.1.1 no such user"}
    assert record["verdicts"] == to_records(VERDICTS)
    assert (dead / entry.id).read_bytes().endswith(MESSAGE)
    assert pipeline.spool.pending() == []


def test_a_quarantined_virus_keeps_its_verdicts_as_the_pools_stored_them(tmp_path):
    pipeline = _pipeline(tmp_path, NextHop())
    entry = _entry(pipeline)
    virus = {"av": av_verdict("infected", "Eicar-Test"), "spam": SPAM_NOT_AWAITED}
    held = Decision("quarantine", "250 2.0.0 Ok: quarantined", "virus Eicar-Test")
    assert pipeline._act(entry, held, virus, client_waiting=False).action == "quarantine"
    meta = pipeline.quarantine.metadata(entry.id)
    assert meta["verdicts"]["av"] == virus["av"].to_record()
    assert meta["verdicts"]["spam"] == {
        "pool": "spam", "status": "skipped", "verdicts": [], "reason": "a virus was found"
    }  # fmt: skip


def test_a_whole_refusal_is_still_told_to_the_waiting_client(tmp_path):
    pipeline = _pipeline(tmp_path, NextHop(DeliveryError("next hop said 554", True, 554)))
    outcome = pipeline._act(_entry(pipeline), CLEAN, VERDICTS, client_waiting=True)
    assert outcome.reply.startswith("550")
    assert pipeline.spool.drain(5)
    assert pipeline.spool.pending() == []


def test_past_its_lifetime_a_failing_entry_is_dead_lettered(tmp_path):
    hop = NextHop(DeliveryError("next hop away"))
    pipeline = _pipeline(tmp_path, hop, spool_max_lifetime_s="0.001")
    entry = _entry(pipeline)
    time.sleep(0.01)  # the lifetime is read from the entry's id: a clock, not a condition
    outcome = pipeline._act(entry, CLEAN, VERDICTS, client_waiting=False)
    assert outcome.action == "dead-letter"
    record = json.loads((tmp_path / "spool" / "dead" / f"{entry.id}.json").read_text())
    assert record["failed"]["bob@example.test"].startswith("554 5.4.7 delivery time expired")
    assert record["dsn"] == ["no DSN: local delivery"]
    assert record["reason"] == "no final outcome within the spool's lifetime"


def test_a_corrupt_envelope_line_is_reported_as_such(tmp_path):
    spool = Spool(tmp_path)
    entry = spool.commit(Envelope("a@x", ("b@x",)), b"x")
    for bad in (
        b"{not json",
        b'{"mail_from": "a@x"}',
        b"[1, 2]",
        b'{"mail_from": 1, "rcpt_tos": []}',
    ):
        (spool.queue / entry.id).write_bytes(bad + b"\nbody")
        with pytest.raises(SpoolEntryCorrupt):
            spool.load(entry.id)


def test_a_backslash_in_the_subject_tag_is_written_as_it_is():
    tagged = headers.tag_subject(b"Subject: offer\r\n\r\nbody\r\n", r"[SP\AM \1]")
    assert tagged.startswith(b"Subject: [SP\\AM \\1] offer\r\n")


def test_an_8bit_sender_is_written_to_the_maildir_as_the_client_sent_it(tmp_path):
    maildir = MaildirDelivery(tmp_path)
    sender = b"al\xffce@example.test".decode("utf-8", "surrogateescape")
    maildir.deliver("1" * 24, Envelope(sender, ("b@x",)), MESSAGE, first=True)
    [delivered] = (tmp_path / "new").iterdir()
    assert delivered.read_bytes().startswith(b"Return-Path: <al\xffce@example.test>\n")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_failed_maildir_write_leaves_nothing_in_tmp(tmp_path):
    maildir = MaildirDelivery(tmp_path)
    (tmp_path / "new").rmdir()  # the rename into new/ fails
    with pytest.raises(FileNotFoundError):
        maildir.deliver("2" * 24, Envelope("a@x", ("b@x",)), MESSAGE, first=True)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_staging_files_a_dead_write_left_are_swept_at_start(tmp_path):
    MaildirDelivery(tmp_path)
    old, fresh = tmp_path / "tmp" / ("3" * 24 + ".mailscan.ab"), tmp_path / "tmp" / "other"
    old.write_bytes(b"half a message")
    fresh.write_bytes(b"not ours")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    MaildirDelivery(tmp_path)
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == ["other"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAILSCAN_DELIVERY_RETRY_S", "0"),
        ("MAILSCAN_SPOOL_MAX_LIFETIME_S", "soon"),
        ("MAILSCAN_SPAM_SUBJECT_TAG", "[SPAM]\r\nBcc: x@example.test"),
    ],
)
def test_the_new_settings_are_validated(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load_settings({variable: value})


def test_the_lifetime_defaults_to_five_days_and_the_retry_to_a_minute():
    settings = load_settings({})
    assert settings.spool_max_lifetime_s == 5 * 86400
    assert settings.delivery_retry_s == 60


def test_a_kept_record_reads_back_as_written(tmp_path):
    pipeline = _pipeline(tmp_path, NextHop())
    kept = replace(Attempts(CLEAN, VERDICTS, ("b@x",)), dsn=("sent",), failed={"c@x": "550"})
    pipeline.handover.retries.put("4" * 24, kept)
    assert pipeline.handover.retries.get("4" * 24) == kept


def test_a_kept_record_written_before_verdicts_were_typed_reads_back(tmp_path):
    """The kept verdicts are the pools' own records, and the front's for a spam verdict
    it did not wait for: a record kept by the version before is delivered, not rescanned."""
    pipeline = _pipeline(tmp_path, NextHop())
    clamav = {"engine": "clamav", "status": "infected", "virus": "Eicar-Test", "score": None,
              "threshold": None, "rules": [], "detail": "", "elapsed_ms": 1.5,
              "unscannable": False}  # fmt: skip
    av = {"pool": "av", "status": "infected", "verdicts": [clamav], "unscannable": False,
          "elapsed_ms": 2.0, "worker": "av@mx", "spool_unreadable": False}  # fmt: skip
    spam = {"pool": "spam", "status": "skipped", "verdicts": [], "reason": "a virus was found"}
    record = {"decision": {"action": "quarantine", "reply": "250 2.0.0 Ok: quarantined",
                           "reason": "virus Eicar-Test", "header_lines": [], "tag_subject": False},
              "verdicts": {"av": av, "spam": spam}, "waiting": ["b@x"], "delivered": [],
              "failed": {}, "attempts": 1, "next_at": 0.0, "last_error": "", "dsn": []}  # fmt: skip
    (pipeline.handover.retries.folder / f"{'7' * 24}.json").write_text(json.dumps(record))
    kept = pipeline.handover.retries.get("7" * 24)
    assert kept is not None
    assert (kept.verdicts["av"].virus_names(), kept.verdicts["spam"]) == (
        ["Eicar-Test"],
        SPAM_NOT_AWAITED,
    )
    # Read back with the fields added since, at their defaults.
    decision = record["decision"] | {"policy": "", "subject_tag": "", "split": ()}
    assert kept.to_json() == record | {"waiting": ("b@x",), "delivered": (), "dsn": (),
                                       "decision": decision}  # fmt: skip


def test_records_of_entries_that_are_gone_are_dropped_at_start(tmp_path):
    pipeline = _pipeline(tmp_path, NextHop())
    kept = Attempts(CLEAN, VERDICTS, ("b@x",))
    for entry_id in ("5" * 24, "6" * 24):
        pipeline.handover.retries.put(entry_id, kept)
    pipeline.handover.retries.drop_orphans({"5" * 24})
    assert pipeline.handover.retries.get("5" * 24) == kept
    assert pipeline.handover.retries.get("6" * 24) is None
