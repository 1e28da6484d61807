"""The crash report exactly as it leaves the server.

By default each crashdump is its summary (tasks/crashes/summary.py): no free text from mail.
With ``details`` (the administrator's choice for one send, off unless chosen) each also
carries ``details``: the free text of the record, scrubbed (tasks/crashes/scrub.py). The
dialog shows both parts apart, so the administrator sees exactly what the choice adds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from tasks.crashes.scrub import Scrubber
from tasks.crashes.summary import summarize

REPORT_FORMAT = "mailscan-crash-report/2"
# Free text a record holds, each scrubbed, and only with the details.
DETAIL_FIELDS = (
    "job_id", "worker", "message", "plugin", "exception", "traceback", "threads",
    "faulthandler", "note",
)  # fmt: skip


def build(
    records: list[dict[str, Any]], scrubber: Scrubber, details: bool = False
) -> dict[str, Any]:
    """The report of these crashdumps (of one signature). It follows from the records alone,
    so the report shown in the dialog is the report sent."""
    ids = sorted(r["id"] for r in records)
    summaries = [summarize(r, message_key(scrubber)) for r in records]
    if details:
        for summary, dump in zip(summaries, records, strict=True):
            summary["details"] = details_of(dump, scrubber)
    return {
        "format": REPORT_FORMAT,
        "report_id": hashlib.sha256(",".join(ids).encode()).hexdigest()[:20],
        "signature": summaries[0]["signature"] if summaries else "",
        "count": len(summaries),
        "crashdumps": summaries,
    }


def details_of(dump: dict[str, Any], scrubber: Scrubber) -> dict[str, Any]:
    return {f: scrubber.scrub(dump.get(f), f) for f in DETAIL_FIELDS if f in dump}


def added_details(report_with_details: dict[str, Any]) -> list[dict[str, Any]]:
    """What the details add to the report: per crashdump, its id and its details."""
    return [{"id": d["id"], "details": d["details"]} for d in report_with_details["crashdumps"]]


def message_key(scrubber: Scrubber) -> bytes:
    """The key of the exception message hashes: from the scrubber's key, never equal to it."""
    return hmac.new(scrubber.key, b"exception message", hashlib.sha256).digest()


def text_of(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
