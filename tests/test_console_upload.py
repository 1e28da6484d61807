"""Crash report uploads and the outcome record, without a stack: a real HTTP receiver on
loopback for the upload, a Redis that is not there for the outcome record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mailserver.front import outcomes
from mailserver.front.spool import Envelope, SpoolEntry
from tasks import redisauth
from tasks.errors import ConfigError, UploadFailed
from tasks.ops import backoff_s, post_report
from tasks.settings import load_settings, platform_assist_prompt
from tests.console_session import ReportReceiver, receiving


@pytest.fixture
def endpoint() -> Iterator[ReportReceiver]:
    with receiving() as server:
        yield server


def settings_for(url: str, token: str = "") -> Any:
    return load_settings({"MAILSCAN_ASSIST_URL": url, "MAILSCAN_ASSIST_TOKEN": token})


def test_the_report_is_posted_as_json_with_the_bearer_token(endpoint):
    report = {"format": "mailscan-crash-report/1", "crashdumps": [{"id": "a" * 32}]}
    assert post_report(settings_for(endpoint.url, "s3cret"), report) == 200
    seen = [
        {"auth": r["headers"].get("Authorization"), "json": r["json"]} for r in endpoint.reports
    ]
    assert seen == [{"auth": "Bearer s3cret", "json": report}]


@pytest.mark.parametrize(
    ("status", "retryable"), [(503, True), (429, True), (408, True), (400, False), (401, False)]
)
def test_server_errors_are_retried_and_refusals_are_not(endpoint, status, retryable):
    endpoint.status = status
    with pytest.raises(UploadFailed) as failed:
        post_report(settings_for(endpoint.url), {"crashdumps": []})
    assert failed.value.retryable is retryable
    assert f"HTTP {status}" in str(failed.value)


def test_an_absent_endpoint_is_retried_with_growing_pauses():
    with pytest.raises(UploadFailed) as failed:
        post_report(settings_for("http://127.0.0.1:1/reports"), {"crashdumps": []})
    assert failed.value.retryable
    assert [backoff_s(n) for n in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]


def test_reports_leave_the_host_only_over_https():
    with pytest.raises(ConfigError, match="MAILSCAN_ASSIST_URL"):
        settings_for("http://reports.example.com/crash")
    assert settings_for("https://reports.example.com/crash").assist_url
    assert settings_for("http://[::1]:9000/crash").assist_url
    assert settings_for("http://localhost:9000/crash").assist_url


def test_the_dialog_follows_the_platform_unless_told():
    assert platform_assist_prompt("darwin") == "next-start"
    assert platform_assist_prompt("win32") == "immediate"
    assert platform_assist_prompt("linux") == "immediate"
    told = load_settings({"MAILSCAN_ASSIST_PROMPT": "next-start"})
    assert told.assist_prompt == "next-start"
    with pytest.raises(ConfigError, match="MAILSCAN_ASSIST_PROMPT"):
        load_settings({"MAILSCAN_ASSIST_PROMPT": "sometimes"})


class Outcome:
    def __init__(self, action: str, reason: str) -> None:
        self.action, self.reason = action, reason


def test_recording_an_outcome_never_fails_the_mail_flow_when_redis_is_away(caplog):
    entry = SpoolEntry("0" * 24, Envelope("a@example.test", ("b@example.test",)), b"Subject: x\n\n")
    away = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    log = outcomes.OutcomeLog(away)
    log.add(entry, Outcome("deliver", "clean"))
    log.blob_done(entry.id)
    log.flush()  # no exception
    assert "1 outcomes not recorded for the console" in caplog.text
    assert "1 stored messages left to their TTL" in caplog.text


@pytest.mark.parametrize(
    ("action", "reason", "verdict"),
    [
        ("deliver", "clean", "clean"),
        ("deliver", "spam, tagged", "spam"),
        ("quarantine", "spam score 9.0", "spam"),
        ("reject", "virus Eicar-Signature", "virus"),
        ("reject", "banned a.zip/b.exe (extension .exe)", "banned"),
        ("quarantine", "banned invoice.pdf.exe (double extension .pdf.exe)", "banned"),
        ("deliver", "spam scan failed", "failed"),
        ("quarantine", "unscannable", "failed"),
        ("tempfail", "virus scan failed", "tempfail"),
    ],
)
def test_each_outcome_counts_under_the_verdict_a_person_expects(action, reason, verdict):
    assert outcomes.verdict_of(action, reason) == verdict


@pytest.mark.integration
def test_outcomes_written_in_one_round_keep_their_order_and_counts(stack, settings):
    client = redisauth.connect(settings)
    log = outcomes.OutcomeLog(client)
    before = _counts_now(client)
    for n, reason in enumerate(["clean", "virus Eicar", "clean"]):
        raw = f"Subject: round {n}\r\n\r\nbody".encode()
        entry = SpoolEntry(f"{n:024x}", Envelope("a@example.test", ("b@example.test",)), raw)
        log.add(entry, Outcome("deliver" if reason == "clean" else "reject", reason))
    log.flush()
    latest = outcomes.latest(client, 3)
    assert [item["subject"] for item in latest] == ["round 2", "round 1", "round 0"]
    after = _counts_now(client)
    assert after.get("clean", 0) - before.get("clean", 0) == 2
    assert after.get("virus", 0) - before.get("virus", 0) == 1


def _counts_now(client: redis.Redis) -> dict[str, int]:
    # The last two minutes: a minute may turn between the two readings.
    total: dict[str, int] = {}
    for _, counts in outcomes.per_minute(client, 2):
        for verdict, count in counts.items():
            total[verdict] = total.get(verdict, 0) + count
    return total


def test_the_subject_is_recorded_decoded():
    raw = b"From: a@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nbody"
    assert outcomes.subject_of(raw) == "Grüße"


class BrokenClient:
    def pipeline(self, **_):
        raise TypeError("a bug in the recording")


def test_a_failing_round_neither_stops_the_recording_nor_keeps_growing(caplog):
    import asyncio

    log = outcomes.OutcomeLog(BrokenClient())
    entry = SpoolEntry("0" * 24, Envelope("a@example.test", ("b@example.test",)), b"Subject: x\n\n")
    for _ in range(outcomes.KEEP_LATEST + 50):
        log.add(entry, Outcome("deliver", "clean"))
    assert len(log._items) == outcomes.KEEP_LATEST
    for _ in range(outcomes.KEEP_DONE_BLOBS + 50):
        log.blob_done(entry.id)
    assert len(log._done_blobs) == outcomes.KEEP_DONE_BLOBS

    async def two_rounds() -> None:
        task = asyncio.create_task(log.run())
        await asyncio.sleep(outcomes.FLUSH_EVERY_S * 2.5)
        assert not task.done()  # still recording after a round that raised
        task.cancel()

    asyncio.run(two_rounds())
    assert "outcomes not recorded for the console" in caplog.text
