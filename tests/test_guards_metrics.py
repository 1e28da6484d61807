"""The metrics guard: every scan adds to the fleet's counters in Redis, by pool, plugin and
status, and a scan that answered to the latency histogram of its plugin."""

import pytest

from tasks.guards.metrics import MetricsGuard
from tasks.wire.keys import METRICS_LATENCY_KEY, METRICS_SCANS_KEY
from tests.conftest import EICAR
from tests.guards_redis import MESSAGE

LATENCY = METRICS_LATENCY_KEY.format(plugin="stub")


def counters(pool_process, key):
    return {k.decode(): float(v) for k, v in pool_process.redis.hgetall(key).items()}


def test_each_scan_counts_once_under_its_pool_plugin_and_status(pool_process):
    pool_process.start("av", MetricsGuard())
    pool_process.scan()
    pool_process.scan()
    pool_process.scan(pool_process.store(MESSAGE + EICAR))
    scans = counters(pool_process, METRICS_SCANS_KEY)
    assert scans == {"av|stub|clean": 2, "av|stub|infected": 1}
    assert counters(pool_process, LATENCY)["count"] == 3


def test_a_job_too_large_to_scan_counts_as_skipped(pool_process):
    engine = pool_process.start("av", MetricsGuard())
    pool_process.scan()
    engine.max_bytes = len(MESSAGE) - 1
    pool_process.scan()
    scans = counters(pool_process, METRICS_SCANS_KEY)
    assert scans == {"av|stub|clean": 1, "av|stub|skipped": 1}


def test_a_scan_lands_in_its_latency_bucket(pool_process):
    engine = pool_process.start("spam", MetricsGuard())
    engine.takes_ms = 30.0
    pool_process.scan()
    engine.takes_ms = 45_000.0
    pool_process.scan()
    latency = counters(pool_process, LATENCY)
    assert (latency["0.05"], latency["+Inf"], latency["count"]) == (1, 1, 2)
    assert latency["sum"] == pytest.approx(45.03)
    assert counters(pool_process, METRICS_SCANS_KEY) == {"spam|stub|ham": 2}


def test_a_failed_scan_counts_as_an_error_without_a_latency(pool_process):
    engine = pool_process.start("av", MetricsGuard())
    engine.fails_with = ValueError
    pool_process.scan()
    assert counters(pool_process, METRICS_SCANS_KEY) == {"av|stub|error": 1}
    assert counters(pool_process, LATENCY) == {}
