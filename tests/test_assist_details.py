"""The details of a crash report go only where the administrator chose them, for that one
report: every other way a report leaves (a plain send, a remembered "always", a report saved
for passing on) carries the summary alone. On a real Redis, with the real crash store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mailserver.console.assist import Assist
from tasks.crashes import records as crashdumps
from tasks.crashes import reports as crashreports
from tasks.crashes.records import Incident
from tasks.crashes.scrub import scrubber_for
from tasks.crashes.store import CrashStore
from tasks.settings import Settings

SECRET = "scan of a message from erin@example.test, Subject: Board minutes"


class Queue:
    """Stands for the upload task: keeps the reports handed to it."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    def __call__(self, report: dict[str, Any], by: str) -> None:
        self.reports.append(json.loads(json.dumps(report)))  # as the task message carries it


@pytest.fixture
def store(guard_redis, tmp_path) -> Iterator[CrashStore]:
    guard_redis.flushdb()
    yield CrashStore(guard_redis, tmp_path / "crashdumps")
    guard_redis.flushdb()


def assist_on(store: CrashStore, tmp_path, url: str = "https://vendor.test/r") -> tuple:
    queue = Queue()
    settings = Settings(assist_url=url)
    return Assist(settings, store, scrubber_for(b"s" * 32), queue, tmp_path / "reports"), queue


def crash(store: CrashStore, plugin: str = "clamav") -> dict[str, Any]:
    incident = Incident("exception", "av", {"name": plugin}, f"job-{plugin}-{id(store)}", {})
    try:
        raise RuntimeError(SECRET)
    except RuntimeError as error:
        crashdumps.from_exception(incident, error)
    dump = crashdumps.record(incident)
    assert store.save(dump) == "redis"
    return dump


def test_send_carries_the_details_only_when_chosen_and_exactly_as_shown(store, tmp_path):
    assist, queue = assist_on(store, tmp_path)
    plain, detailed = crash(store, "clamav"), crash(store, "spamassassin")
    shown = assist.added_details([detailed])
    assist.answer([plain["id"]], send=True, by="admin")
    assist.answer([detailed["id"]], send=True, by="admin", details=True)
    first, second = queue.reports
    assert "details" not in first["crashdumps"][0]
    assert SECRET not in json.dumps(first)
    assert [{"id": d["id"], "details": d["details"]} for d in second["crashdumps"]] == shown
    assert "[email-" in json.dumps(second)
    audit = {e["report"]: e["details"] for e in crashreports.audit_log(store.redis)
             if e["action"] == "send"}  # fmt: skip
    assert audit == {first["report_id"]: False, second["report_id"]: True}


def test_a_remembered_always_sends_the_summary_alone(store, tmp_path):
    assist, queue = assist_on(store, tmp_path)
    dump = crash(store)
    crashreports.remember(store.redis, dump["signature"], "always", "admin")
    assert assist.pending() == []  # answered by the remembered choice
    [report] = queue.reports
    assert [d["id"] for d in report["crashdumps"]] == [dump["id"]]
    assert "details" not in report["crashdumps"][0]


def test_a_saved_report_holds_what_was_chosen(store, tmp_path):
    assist, _ = assist_on(store, tmp_path, url="")
    plain, detailed = crash(store, "clamav"), crash(store, "builtin")
    saved_plain = assist.answer([plain["id"]], send=True, by="admin").report_file
    saved_detailed = assist.answer([detailed["id"]], True, "admin", details=True).report_file
    assert "details" not in json.loads(saved_plain.read_text())["crashdumps"][0]
    assert "details" in json.loads(saved_detailed.read_text())["crashdumps"][0]
