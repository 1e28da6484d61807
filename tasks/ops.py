"""Maintenance tasks of the ops worker. ``upload_crash_report`` sends a scrubbed crash report,
chosen in the console or with ``mailscan assist``, to ``MAILSCAN_ASSIST_URL``: retried with
exponential backoff, so a slow or absent endpoint delays only this task, never the console."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from celery import Task

from tasks import redisauth
from tasks.celery import app
from tasks.crashes import reports as crashreports
from tasks.errors import UploadFailed
from tasks.settings import Settings, current_settings
from tasks.wire.keys import UPLOAD_TASK

log = logging.getLogger(__name__)
MAX_RETRIES = 6
BACKOFF_FIRST_S, BACKOFF_MAX_S = 5.0, 300.0
# Connecting should be quick; a receiver may take a moment to store a report.
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def backoff_s(retries: int) -> float:
    """5, 10, 20, 40 ... seconds, at most five minutes."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**retries)


def post_report(settings: Settings, report: dict[str, Any]) -> int:
    """POST the report as JSON; return the HTTP status, or raise UploadFailed."""
    if not settings.assist_url:
        raise UploadFailed("no MAILSCAN_ASSIST_URL configured", retryable=False)
    headers = {"User-Agent": "mailscan-crash-report"}
    if settings.assist_token:
        headers["Authorization"] = f"Bearer {settings.assist_token}"
    try:
        answer = httpx.post(settings.assist_url, json=report, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as err:
        raise UploadFailed(f"endpoint unreachable: {err}") from err
    if answer.is_success:
        return answer.status_code
    retryable = answer.status_code >= 500 or answer.status_code in (408, 429)
    raise UploadFailed(f"endpoint answered HTTP {answer.status_code}", retryable)


@app.task(name=UPLOAD_TASK, bind=True, max_retries=MAX_RETRIES, acks_late=True)
def upload_crash_report(self: Task, report: dict[str, Any], requested_by: str) -> str:
    settings = current_settings()
    client = redisauth.connect(settings, socket_timeout=10)
    ids = [dump["id"] for dump in report.get("crashdumps", [])]
    report_id = report.get("report_id", "")
    details = any("details" in dump for dump in report.get("crashdumps", []))
    try:
        status = post_report(settings, report)
    except UploadFailed as err:
        if err.retryable and self.request.retries < MAX_RETRIES:
            delay = backoff_s(self.request.retries)
            crashreports.audit(client, "upload retry", requested_by, report=report_id,
                               detail=f"{err}; next try in {delay:.0f} s")  # fmt: skip
            raise self.retry(countdown=delay, exc=err) from err
        log.warning("crash report %s not sent: %s", report_id, err)
        crashreports.settle(client, ids, "send failed", requested_by, report=report_id,
                            detail=str(err))  # fmt: skip
        crashreports.audit(client, "upload failed", requested_by, report=report_id, detail=str(err))
        return "send failed"
    crashreports.settle(client, ids, "sent", requested_by, report=report_id,
                        detail=f"HTTP {status}", details=details)  # fmt: skip
    crashreports.audit(client, "uploaded", requested_by, report=report_id,
                       detail=f"HTTP {status}", details=details)  # fmt: skip
    return "sent"
