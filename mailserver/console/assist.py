"""The assist logic behind the dialog and ``mailscan assist``: which crashdumps still wait for
a decision, the exact report each answer would send (tasks/crashes/payload.py: the summary
alone unless the details are chosen for this one send), and what each answer does.

Send queues the report for the ops worker (``tasks.ops.upload_crash_report``), or, with no
endpoint configured, saves it as a file for the administrator to pass on. A remembered choice
per signature (always / never) answers for new crashdumps of that signature, and is recorded
in the audit log like any answer; it sends the summary alone, never the details, which are
chosen (after seeing them) for one send at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.crashes import payload as crashpayload
from tasks.crashes import reports as crashreports
from tasks.crashes.scrub import Scrubber
from tasks.crashes.store import CrashStore
from tasks.settings import Settings

MAX_PER_REPORT = 20
DUMP_ID = re.compile(r"^[0-9a-f]{32}$")
REPORT_ID = re.compile(r"^[0-9a-f]{20}$")
SendTask = Callable[[dict[str, Any], str], None]


@dataclass
class PendingGroup:
    """Crashdumps of one signature that wait for an answer, oldest first."""

    signature: str
    records: list[dict[str, Any]]
    waiting: int  # all of this signature that wait, shown or not

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.records]

    @property
    def newest_ts(self) -> float:
        return max(r["ts"] for r in self.records)


@dataclass
class Answer:
    """What became of an answer: the ids it applied to, and the saved file if any."""

    state: str
    ids: list[str]
    report_file: Path | None = None
    details: bool = False


class Assist:
    def __init__(
        self,
        settings: Settings,
        crashes: CrashStore,
        scrubber: Scrubber,
        send_task: SendTask,
        reports_dir: Path,
    ) -> None:
        self.settings, self.crashes, self.scrubber = settings, crashes, scrubber
        self.redis = crashes.redis
        self.send_task, self.reports_dir = send_task, reports_dir

    def pending(
        self, newer_than: float = 0.0, older_than: float | None = None
    ) -> list[PendingGroup]:
        """Groups waiting for an answer, oldest incident first, among crashdumps that
        happened between the two times. Remembered choices are applied first."""
        waiting = self._apply_remembered(self._undecided())
        by_signature: dict[str, list[dict[str, Any]]] = {}
        for dump in sorted(waiting, key=lambda d: d["ts"]):
            by_signature.setdefault(dump["signature"], []).append(dump)
        groups = []
        for signature, dumps in by_signature.items():
            shown = [d for d in dumps if d["ts"] > newer_than and _before(d, older_than)]
            if shown:
                groups.append(PendingGroup(signature, shown[:MAX_PER_REPORT], len(dumps)))
        return groups

    def payload(self, records: list[dict[str, Any]], details: bool = False) -> dict[str, Any]:
        """The report exactly as it would be sent, with the details or without."""
        return crashpayload.build(records, self.scrubber, details)

    def added_details(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Exactly what choosing the details adds to the report of these crashdumps."""
        return crashpayload.added_details(self.payload(records, details=True))

    def records(self, ids: list[str]) -> list[dict[str, Any]]:
        """The crashdumps named, ignoring any id that is malformed or unknown."""
        found = [self.crashes.get(i) for i in ids if DUMP_ID.match(i)]
        return [r for r in found if r is not None]

    def answer(
        self, ids: list[str], send: bool, by: str, remember: str = "ask", details: bool = False
    ) -> Answer:
        """Send or decline these crashdumps (those still undecided), and remember the choice
        for their signature: ``ask``, ``always`` or ``never``. ``details`` adds the scrubbed
        free text to this one report; a remembered choice never adds it."""
        if remember not in crashreports.CHOICES:
            raise ValueError(f"remember must be one of {', '.join(crashreports.CHOICES)}")
        records = self.records(ids)
        for signature in {r["signature"] for r in records}:
            self._remember_if_changed(signature, remember, by)
        return self._send(records, by, details) if send else self._decline(records, by)

    def states(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return crashreports.states(self.redis, ids)

    def choices(self) -> dict[str, str]:
        return crashreports.remembered(self.redis)

    def report_file(self, report_id: str) -> Path | None:
        if not REPORT_ID.match(report_id):
            return None
        path = self.reports_dir / f"crash-report-{report_id}.json"
        return path if path.is_file() else None

    def _undecided(self) -> list[dict[str, Any]]:
        dumps = self.crashes.records()
        decided = self.states([d["id"] for d in dumps])
        return [d for d in dumps if decided[d["id"]]["state"] == "new"]

    def _apply_remembered(self, dumps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        choices = self.choices()
        for choice, act in (("always", self._send), ("never", self._decline)):
            chosen = [d for d in dumps if choices.get(d["signature"]) == choice]
            for signature in {d["signature"] for d in chosen}:
                same = [d for d in chosen if d["signature"] == signature]
                act(same[:MAX_PER_REPORT], f"remembered choice: {choice}")
        return [d for d in dumps if choices.get(d["signature"]) not in ("always", "never")]

    def _send(self, records: list[dict[str, Any]], by: str, details: bool = False) -> Answer:
        state = "queued" if self.settings.assist_url else "saved"
        ids = [r["id"] for r in records]
        claimed = set(crashreports.claim(self.redis, ids, state, by, details=details))
        mine = [r for r in records if r["id"] in claimed]
        if not mine:
            return Answer(state, [])
        # Built once, here: the upload task carries this very report, whatever happens to
        # the records or the choice before it is sent.
        report = self.payload(mine, details)
        ids, report_id = sorted(claimed), report["report_id"]
        said = {"report": report_id, "crashdumps": ids, "details": details}
        if self.settings.assist_url:
            self.send_task(report, by)
            crashreports.audit(self.redis, "send", by, **said)
            return Answer(state, ids, details=details)
        path = self._save(report)
        crashreports.settle(self.redis, ids, "saved", by, report=report_id, details=details)
        crashreports.audit(self.redis, "saved report", by, **said)
        return Answer(state, ids, path, details)

    def _decline(self, records: list[dict[str, Any]], by: str) -> Answer:
        ids = crashreports.claim(self.redis, [r["id"] for r in records], "declined", by)
        if ids:
            crashreports.audit(self.redis, "decline", by, crashdumps=ids)
        return Answer("declined", ids)

    def _remember_if_changed(self, signature: str, choice: str, by: str) -> None:
        if self.choices().get(signature, "ask") != choice:
            crashreports.remember(self.redis, signature, choice, by)

    def _save(self, report: dict[str, Any]) -> Path:
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        path = self.reports_dir / f"crash-report-{report['report_id']}.json"
        path.write_text(json.dumps(report, indent=2))
        return path


def _before(dump: dict[str, Any], older_than: float | None) -> bool:
    return older_than is None or dump["ts"] < older_than


def payload_text(report: Any) -> str:
    return crashpayload.text_of(report)
