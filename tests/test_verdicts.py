"""The verdict record between the pools and the front: typed on both sides, stored as it
always was, so a front and pools one version apart still read each other's verdicts."""

from __future__ import annotations

import pytest
from kombu.serialization import dumps, loads

from mailserver.front.policy import SPAM_NOT_AWAITED
from tasks.plugins.base import Verdict
from tasks.wire.verdicts import EngineVerdict, PoolVerdict, from_records, to_records

# An av verdict as the runner stored it before verdicts were typed.
STORED = {
    "pool": "av",
    "status": "infected",
    "verdicts": [
        {"engine": "clamav", "status": "infected", "virus": "Eicar-Signature", "score": None,
         "threshold": None, "rules": [], "detail": "", "elapsed_ms": 1.25, "unscannable": False},
        {"engine": "builtin", "status": "clean", "virus": None, "score": None,
         "threshold": None, "rules": [], "detail": "", "elapsed_ms": 0.5, "unscannable": False},
    ],
    "unscannable": False,
    "elapsed_ms": 2.75,
    "worker": "av@mx1",
    "spool_unreadable": False,
}  # fmt: skip

VERDICT = PoolVerdict(
    pool="av",
    status="infected",
    engines=(
        EngineVerdict("clamav", "infected", virus="Eicar-Signature", elapsed_ms=1.25),
        EngineVerdict("builtin", "clean", elapsed_ms=0.5),
    ),
    elapsed_ms=2.75,
    worker="av@mx1",
)


def test_the_stored_form_is_the_record_the_pools_always_stored():
    assert VERDICT.to_record() == STORED
    assert PoolVerdict.from_record(STORED) == VERDICT


def test_a_verdict_round_trips_through_the_result_backends_serializer():
    rules = ("GTUBE", "MISSING_DATE")
    spamd = EngineVerdict("spamassassin", "spam", score=9.5, threshold=5.0, rules=rules)
    spam = PoolVerdict("spam", "spam", (spamd,), elapsed_ms=3.0, worker="spam@mx1")
    for verdict in (VERDICT, spam, PoolVerdict("av", "error", spool_unreadable=True)):
        content_type, encoding, payload = dumps(verdict.to_record(), serializer="msgpack")
        stored = loads(payload, content_type, encoding, accept=[content_type])
        assert PoolVerdict.from_record(stored) == verdict


def test_the_fronts_own_verdict_is_stored_as_it_always_was():
    record = {"pool": "spam", "status": "skipped", "verdicts": [], "reason": "a virus was found"}
    assert SPAM_NOT_AWAITED.to_record() == record
    assert PoolVerdict.from_record(record) == SPAM_NOT_AWAITED


def test_verdicts_by_pool_keep_a_missing_verdict_missing():
    by_pool = {"av": VERDICT, "spam": None}
    assert to_records(by_pool) == {"av": STORED, "spam": None}
    assert from_records(to_records(by_pool)) == by_pool


def test_a_newer_pools_record_reads_and_an_older_ones_gaps_take_defaults():
    newer = {**STORED, "queued_ms": 4.0, "verdicts": [{**STORED["verdicts"][0], "engine_v": 2}]}
    assert PoolVerdict.from_record(newer).engines[0] == VERDICT.engines[0]
    sparse = PoolVerdict.from_record({"pool": "spam", "status": "ham"})
    assert (sparse.engines, sparse.worker, sparse.unscannable) == ((), "", False)


@pytest.mark.parametrize(
    "record",
    [{"status": "clean"}, "Traceback: not a verdict", None, {**STORED, "verdicts": [{}]}],
)
def test_what_is_no_verdict_is_told_apart(record):
    with pytest.raises(ValueError, match="not a"):
        PoolVerdict.from_record(record)


def test_the_helpers_policy_and_headers_read():
    assert VERDICT.virus_names() == ["Eicar-Signature"]
    assert VERDICT.first_engine() == VERDICT.engines[0]
    assert SPAM_NOT_AWAITED.first_engine() is None


def test_plugins_still_know_the_engine_verdict_by_its_old_name():
    assert Verdict is EngineVerdict


def test_a_banned_verdict_keeps_its_part_and_older_records_stay_as_they_were():
    banned = EngineVerdict("banned", "banned", rules=("extension .exe",), part="a.zip/b.exe")
    record = banned.to_record()
    assert record["part"] == "a.zip/b.exe"
    assert EngineVerdict.from_record(record) == banned
    assert "part" not in EngineVerdict("clamav", "clean").to_record()
    pool = PoolVerdict("av", "banned", (EngineVerdict("clamav", "clean"), banned))
    assert PoolVerdict.from_record(pool.to_record()).banned_engine() == banned


def test_a_truncated_scan_keeps_how_much_was_scanned_and_others_stay_as_they_were():
    spamd = EngineVerdict("spamassassin", "spam", score=9.0, threshold=5.0,
                          scanned_bytes=511_000, message_bytes=2_300_000)  # fmt: skip
    record = spamd.to_record()
    assert (record["scanned_bytes"], record["message_bytes"]) == (511_000, 2_300_000)
    assert EngineVerdict.from_record(record) == spamd
    assert spamd.truncated
    whole = EngineVerdict("spamassassin", "ham", score=0.1, threshold=5.0)
    assert "scanned_bytes" not in whole.to_record()
    assert not whole.truncated
