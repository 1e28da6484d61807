"""Health probes, sent by beat through each pool: an answer proves the pool and its backends."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from celery import Task

from tasks import redisauth
from tasks.celery import app
from tasks.errors import MailscanError
from tasks.guards import breaker
from tasks.plugins import load_plugin
from tasks.settings import current_settings
from tasks.wire.keys import AV_POOL, HEALTH_KEY, HEALTH_TASKS, SPAM_POOL
from tasks.wire.spoolfile import spool_id

log = logging.getLogger(__name__)


def probe(pool: str, hostname: str) -> dict[str, Any]:
    settings = current_settings()
    report = {}
    for name in settings.pools[pool].plugins:
        try:
            report[name] = {"ok": True, "version": load_plugin(name, pool, settings).health()}
        except MailscanError as err:
            report[name] = {"ok": False, "error": str(err)}
    record = {"pool": pool, "worker": hostname, "at": time.time(), "plugins": report}
    # Whether big messages can reach this pool through the spool (tasks/wire/spoolfile.py).
    record["spool"] = {"dir": str(settings.spool_dir), "id": spool_id(settings.spool_dir)}
    answers = ", ".join(f"{n} {'ok' if a['ok'] else 'failing'}" for n, a in report.items())
    log.info("health probe %s: %s", pool, answers)
    client = redisauth.connect(settings)
    client.hset(HEALTH_KEY, hostname, json.dumps(record))  # a worker's own: hosts differ
    for name in (n for n, answer in report.items() if answer["ok"]):
        breaker.close(client, name)  # the backend answers: no worker need skip it any more
    client.close()
    return record


@app.task(name=HEALTH_TASKS[AV_POOL], bind=True)
def health_av(self: Task) -> dict[str, Any]:
    return probe(AV_POOL, self.request.hostname)


@app.task(name=HEALTH_TASKS[SPAM_POOL], bind=True)
def health_spam(self: Task) -> dict[str, Any]:
    return probe(SPAM_POOL, self.request.hostname)
