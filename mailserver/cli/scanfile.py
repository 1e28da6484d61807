"""``mailscan scan FILE``: one message through the real pools, outside any SMTP session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

from mailserver.front.server import check_redis
from mailserver.front.spool import new_id
from tasks.celery import app
from tasks.errors import MailscanError
from tasks.settings import Settings
from tasks.wire.submit import submit


def scan_file(settings: Settings, path: Path, timeout_s: float) -> dict[str, Any]:
    """Verdict per pool; None for a pool that gave none within ``timeout_s``."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MailscanError(f"cannot read {path}: {err.strerror}") from err
    task_ids = submit(app, check_redis(settings), f"cli{new_id()}", data, settings.blob_ttl_s)
    return {pool: _result(task_id, timeout_s) for pool, task_id in task_ids.items()}


def _result(task_id: str, timeout_s: float) -> dict[str, Any] | None:
    result = app.AsyncResult(task_id)
    try:
        return result.get(timeout=timeout_s, propagate=False)
    except CeleryTimeout:
        return None
    finally:
        result.forget()


def verdict_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for pool, result in results.items():
        if not result or not isinstance(result, dict):
            lines.append(f"{pool:<5} no verdict (no worker answered in time)")
            continue
        for verdict in result["verdicts"]:
            lines.append(
                f"{pool:<5} {verdict['status']:<9} {_detail(verdict)}  [{result['worker']}]"
            )
    return lines


def _detail(verdict: dict[str, Any]) -> str:
    engine = verdict["engine"]
    if verdict.get("virus"):
        return f"{engine}: {verdict['virus']}"
    if verdict.get("score") is not None:
        rules = ",".join(verdict.get("rules") or ()) or "none"
        return f"{engine}: score {verdict['score']:.1f} / {verdict['threshold']:.1f} rules {rules}"
    return f"{engine}: {verdict.get('detail') or 'ok'}"
