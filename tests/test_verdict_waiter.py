"""The front's verdict subscriber ends when told to, even when the Redis client swallows a
cancellation (it does, under uvloop, when cancelled while it connects); and nothing else ends
it: a verdict it cannot decode fails only that job, and a killed connection is made again
with the verdicts published meanwhile read from their keys."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from mailserver.front.verdicts import VerdictWaiter
from mailserver.supervisor.services import control_app
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tasks.wire import results
from tasks.wire.fleet import json_records
from tasks.wire.jobids import job_ids
from tasks.wire.keys import RESULT_KEY_PREFIX, SPOOL_REPORT_KEY
from tasks.wire.verdicts import PoolVerdict
from tests.conftest import mailscan, stack_env, wait_for

OFFSET = 8  # ports of a Redis of its own (tests/conftest.py stack_env)
WAIT_S = 10.0


async def _deaf_to_the_first_cancel(ended: asyncio.Event) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)  # the cancellation lost inside the client
    try:
        await asyncio.sleep(3600)  # and on to wait for messages, as the subscriber does
    finally:
        ended.set()


def test_close_ends_a_subscriber_that_swallowed_a_cancellation():
    async def run() -> bool:
        never_connected = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
        waiter = VerdictWaiter(never_connected, lambda raw: {})
        ended = asyncio.Event()
        waiter._reader = asyncio.create_task(_deaf_to_the_first_cancel(ended))
        await asyncio.sleep(0)
        closing = asyncio.create_task(waiter.close())
        # Not wait_for: its own cancellation at the timeout would end the subscriber for us.
        done, _ = await asyncio.wait({closing}, timeout=5)
        for task in (closing, waiter._reader):
            task.cancel()  # only if the test fails: let asyncio.run end
        return closing in done and ended.is_set()

    assert asyncio.run(run())


@pytest.fixture(scope="module")
def redis_stack() -> Iterator[Stack]:
    """A Redis of its own: these tests kill its subscriber connections."""
    env = stack_env("verdicts", OFFSET)
    running = Stack(load_settings(env), env)
    try:
        running.start(["redis"], progress=lambda _: None)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def redis_only(redis_stack) -> Settings:
    return redis_stack.settings


@contextlib.asynccontextmanager
async def subscribed(settings: Settings) -> AsyncIterator[tuple[VerdictWaiter, Any]]:
    """A started waiter, decoding as the front does, and the backend that writes verdicts."""
    backend = control_app(settings).backend
    waiter = VerdictWaiter(redisauth.connect_async(settings), backend.decode_result)
    await waiter.start()
    try:
        await _until(lambda: waiter.alive, "the subscriber to subscribe")
        yield waiter, backend
    finally:
        await waiter.close()


async def _until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _verdict(pool: str) -> PoolVerdict:
    return PoolVerdict(pool, "clean", worker=f"{pool}@mx")


async def _waited(waiter: VerdictWaiter, task_id: str) -> tuple[dict[str, Any], float]:
    """The job's result meta and how long it took, with a timeout far longer than a verdict
    needs: the last read of the key at the timeout must not be what finds it."""
    started = time.monotonic()
    meta = await waiter.wait(task_id, WAIT_S)
    return meta, time.monotonic() - started


def test_a_verdict_that_cannot_be_decoded_fails_its_job_and_the_next_is_delivered(redis_only):
    async def run() -> None:
        client = redisauth.connect(redis_only)
        async with subscribed(redis_only) as (waiter, backend):
            garbled, good = job_ids(f"{time.time_ns():024x}").values()
            for task_id in (garbled, good):
                waiter.expect(task_id)
            client.publish(RESULT_KEY_PREFIX.encode() + b"\xff\xfe", b"no job's channel")
            client.publish(RESULT_KEY_PREFIX + garbled, b"\x00 not msgpack \xc1")
            failed, failed_after_s = await _waited(waiter, garbled)
            assert failed["status"] == "FAILURE"
            assert "cannot be decoded" in failed["result"]
            results.store(client.pipeline(transaction=False), backend, good, _verdict("spam"))
            meta, took_s = await _waited(waiter, good)
            assert meta["result"] == _verdict("spam").to_record()
            assert max(failed_after_s, took_s) < WAIT_S / 2
            assert waiter.alive

    asyncio.run(run())


def test_the_subscriber_recovers_a_killed_connection_and_what_was_published_meanwhile(
    redis_only,
):
    async def run() -> None:
        client = redisauth.connect(redis_only)
        async with subscribed(redis_only) as (waiter, backend):
            during, after = job_ids(f"{time.time_ns():024x}").values()
            for task_id in (during, after):
                waiter.expect(task_id)
            # One transaction: the verdict is published while the subscriber is gone.
            with client.pipeline(transaction=True) as pipe:
                pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
                results.add(pipe, backend, during, _verdict("av"))
                pipe.execute()
            await _until(lambda: not waiter.alive, "the subscriber to be shown down")
            meta, took_s = await _waited(waiter, during)
            assert (meta["result"], took_s < WAIT_S / 2) == (_verdict("av").to_record(), True)
            await _until(lambda: waiter.alive, "the subscriber to come back")
            results.store(client.pipeline(transaction=False), backend, after, _verdict("spam"))
            meta, took_s = await _waited(waiter, after)
            assert (meta["result"], took_s < WAIT_S / 2) == (_verdict("spam").to_record(), True)

    asyncio.run(run())


def test_a_subscriber_that_fails_unexpectedly_is_logged_and_started_again(redis_only, caplog):
    async def run() -> None:
        client = redisauth.connect(redis_only)
        async with subscribed(redis_only) as (waiter, backend):
            listen, failures = waiter._listen, [RuntimeError("a bug of ours")]

            async def fails_once() -> None:
                if failures:
                    raise failures.pop()
                await listen()

            waiter._listen = fails_once  # the next time it subscribes
            client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            await _until(lambda: not failures, "the failure")
            task_id = job_ids(f"{time.time_ns():024x}")["av"]
            waiter.expect(task_id)
            await _until(lambda: waiter.alive, "the subscriber to start again")
            results.store(client.pipeline(transaction=False), backend, task_id, _verdict("av"))
            meta, took_s = await _waited(waiter, task_id)
            assert (meta["result"], took_s < WAIT_S / 2) == (_verdict("av").to_record(), True)

    asyncio.run(run())
    [failed] = [r for r in caplog.records if "starting it again" in r.getMessage()]
    assert failed.exc_info[1].args == ("a bug of ours",)  # with its traceback


def test_the_front_shows_its_subscriber_alive_in_metrics_and_status(redis_stack):
    settings = redis_stack.settings
    redis_stack.start(["mailserver"], progress=lambda _: None)
    try:
        client = redisauth.connect(settings)
        wait_for(lambda: "mailscan_verdict_subscriber_up 1.0" in _metrics(settings), 10, "up")
        client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        lost = "verdict subscriber lost Redis"
        wait_for(lambda: lost in redis_stack.log_tail("mailserver", 50), 10, "the loss noticed")
        wait_for(lambda: "mailscan_verdict_subscriber_up 1.0" in _metrics(settings), 10, "back")
        reported_at = time.time()
        wait_for(lambda: _front_reported_since(client, reported_at), 10, "the front's report")
        status = mailscan("status", env=redis_stack.env)
        assert "  verdict subscriber up" in status.stdout.splitlines(), status.stdout
    finally:
        redis_stack.stop(["mailserver"])


def _metrics(settings: Settings) -> str:
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


def _front_reported_since(client: redis.Redis, since: float) -> bool:
    reports = json_records(client, SPOOL_REPORT_KEY).values()
    return any(r["at"] >= since and r.get("verdict_subscriber") for r in reports)
