"""``mailscan scan FILE``: one message through the real pools, outside any SMTP session."""

from __future__ import annotations

from pathlib import Path

from celery.exceptions import TimeoutError as CeleryTimeout

from mailserver.front.server import check_redis
from mailserver.front.spool import new_id
from tasks.celery import app
from tasks.errors import MailscanError
from tasks.settings import Settings
from tasks.wire.submit import submit
from tasks.wire.verdicts import ByPool, EngineVerdict, PoolVerdict


def scan_file(settings: Settings, path: Path, timeout_s: float) -> ByPool:
    """Verdict per pool; None for a pool that gave none within ``timeout_s``."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MailscanError(f"cannot read {path}: {err.strerror}") from err
    task_ids = submit(app, check_redis(settings), f"cli{new_id()}", data, settings.blob_ttl_s)
    return {pool: _result(task_id, timeout_s) for pool, task_id in task_ids.items()}


def _result(task_id: str, timeout_s: float) -> PoolVerdict | None:
    """The job's verdict; None when it gave none in time, or failed (its result is then the
    exception, no verdict)."""
    result = app.AsyncResult(task_id)
    try:
        return PoolVerdict.from_record(result.get(timeout=timeout_s, propagate=False))
    except (CeleryTimeout, ValueError):
        return None
    finally:
        result.forget()


def verdict_lines(results: ByPool) -> list[str]:
    lines = []
    for pool, result in results.items():
        if result is None:
            lines.append(f"{pool:<5} no verdict (no worker answered in time)")
            continue
        for verdict in result.engines:
            lines.append(f"{pool:<5} {verdict.status:<9} {_detail(verdict)}  [{result.worker}]")
    return lines


def _detail(verdict: EngineVerdict) -> str:
    engine = verdict.engine
    if verdict.virus:
        return f"{engine}: {verdict.virus}"
    if verdict.score is not None:
        rules = ",".join(verdict.rules) or "none"
        return f"{engine}: score {verdict.score:.1f} / {verdict.threshold or 0.0:.1f} rules {rules}"
    return f"{engine}: {verdict.detail or 'ok'}"
