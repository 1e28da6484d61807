"""The av pool killed mid-scan behind a private Postfix, each way (content filter, proxy, milter):
a stream of mail while one pool process is killed (SIGKILL), then the whole pool (SIGKILL of
its process group, started again by the stack). Every message is answered or deferred in
Postfix's queue, none is lost, none passes unscanned, none arrives twice.

The pools of a stack of its own: killing them disturbs no other test."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from mailserver.supervisor.stack import Stack
from tasks.settings import Settings, load_settings
from tests.behind_postfix import (
    FILTER_MAILSCAN,
    PROXY_MAILSCAN,
    Ports,
    filter_postfix,
    front_env,
    proxy_postfix,
    running_front,
)
from tests.conftest import EICAR, make_message, port, running_stack, stack_env, wait_for
from tests.milter_front import MilterFront
from tests.postfix_instance import PostfixInstance, running, send_via
from tests.smtp_ends import NextHop
from tests.test_milter_postfix import milter_main

pytestmark = pytest.mark.integration

OFFSET = 9  # ports of a stack of its own (tests/conftest.py stack_env)
MESSAGES = 12
SENDERS = 3
KILL_ONE_AT, KILL_ALL_AT = 3, 7  # messages through when each kill comes
BOB = "bob@example.test"
FILTER_PORTS = Ports(client=port(13080), scan=port(13081), back=port(13082),
                     next_hop=port(13083), metrics=port(19381))  # fmt: skip
PROXY_PORTS = Ports(client=port(13085), scan=port(13086), back=port(13087),
                    next_hop=port(13088), metrics=port(19382))  # fmt: skip
MILTER_CLIENT_PORT, MILTER_HOP_PORT = port(13090), port(13091)
MILTER_N = 9  # the milter front's ports (tests/milter_front.py)
# Unfinished mail is looked at again soon, not after the default half minute.
FRONT_SETTINGS = {"redrive_interval_s": "2"}


@pytest.fixture(scope="module")
def pk_env() -> dict[str, str]:
    # Every av scan takes its time (the chaos plugin's "slow"), so that the kills find
    # scans in the pool, not an idle pool between messages. The pool started again takes
    # back the jobs it had taken (tasks/takenjobs.py); a short deadline keeps the wait short
    # for a message whose job the killed pool process had not yet handed back.
    return stack_env(
        "poolkill", OFFSET, av_plugins="chaos,clamav", chaos="slow@1", scan_deadline_s="10"
    )


@pytest.fixture(scope="module")
def pk_settings(pk_env) -> Settings:
    return load_settings(pk_env)


@pytest.fixture(scope="module")
def pk_stack(pk_settings, pk_env) -> Iterator[Stack]:
    yield from running_stack(pk_settings, pk_env)


def _way(pk_settings, pk_env, name: str, ports: Ports, recipe, postfix_of) -> Iterator:
    env = front_env(pk_settings, name, ports, recipe, base=pk_env, **FRONT_SETTINGS)
    with NextHop(ports.next_hop) as hop:
        for _, front_settings in running_front(env):
            with running(postfix_of(ports)) as postfix:
                yield postfix, hop, front_settings


@pytest.fixture
def content_filter(pk_stack, pk_settings, pk_env):
    yield from _way(pk_settings, pk_env, "pk-filter", FILTER_PORTS, FILTER_MAILSCAN, filter_postfix)


@pytest.fixture
def proxy(pk_stack, pk_settings, pk_env):
    yield from _way(pk_settings, pk_env, "pk-proxy", PROXY_PORTS, PROXY_MAILSCAN, proxy_postfix)


@pytest.fixture
def milter(pk_stack, pk_env):
    front = MilterFront("pk-milter", MILTER_N, base_env=pk_env, overrides=FRONT_SETTINGS)
    with NextHop(MILTER_HOP_PORT) as hop:
        front.start()
        try:
            instance = PostfixInstance(
                MILTER_CLIENT_PORT, f"[127.0.0.1]:{hop.port}", milter_main(front)
            )
            with running(instance) as postfix:
                yield postfix, hop
        finally:
            front.stop()


def _markers(way: str) -> dict[str, bool]:
    """Each message's marker, and whether it carries a virus (every tenth one does)."""
    return {f"poolkill-{way}-{n:02d}.": n % 10 == 5 for n in range(MESSAGES)}


def _send_stream(postfix: PostfixInstance, markers: dict[str, bool]) -> dict[str, Future]:
    pool = ThreadPoolExecutor(SENDERS)
    sent = {}
    for marker, virus in markers.items():
        message = make_message(body=marker, attachment=EICAR if virus else None)
        sent[marker] = pool.submit(send_via, postfix.port, message)
    pool.shutdown(wait=False)
    return sent


def _pool_processes(stack: Stack) -> list[int]:
    main = stack.pid("av-worker")
    children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
    return [int(pid) for pid in children]


def _kill_mid_stream(stack: Stack, through: Callable[[], int]) -> None:
    """SIGKILL one pool process, then the whole pool, as the stream goes by."""
    wait_for(lambda: through() >= KILL_ONE_AT, 180, f"{KILL_ONE_AT} messages through")
    os.kill(_pool_processes(stack)[0], signal.SIGKILL)
    wait_for(lambda: through() >= KILL_ALL_AT, 240, f"{KILL_ALL_AT} messages through")
    assert through() < MESSAGES, "the stream ended before the pool was killed"
    # The process group: the pool's main process and every process it forked.
    os.killpg(stack.pid("av-worker"), signal.SIGKILL)
    stack.restart("av-worker")


def _assert_scanned_once(hop: NextHop, markers: dict[str, bool], expected: set[str]) -> None:
    """Each expected message at the next hop once, scanned; no other one of the stream."""
    copies = {m: hop.copies(BOB, m.encode()) for m in markers}
    assert {m for m, n in copies.items() if n} == expected
    assert set(copies[m] for m in expected) <= {1}, copies  # never twice
    ours = [r.content for r in hop.received if any(m.encode() in r.content for m in markers)]
    assert all(b"X-Virus-Status: Clean" in content for content in ours)
    assert hop.dsns(b"poolkill-") == []


def test_content_filter_pool_killed_mid_stream(pk_stack, content_filter):
    postfix, hop, front = content_filter
    markers = _markers("filter")

    def quarantined() -> set[str]:
        held = [p.read_bytes() for p in front.quarantine_dir.glob("*.eml")]
        return {m for m in markers if any(m.encode() in content for content in held)}

    def through() -> int:
        return sum(hop.copies(BOB, m.encode()) > 0 for m in markers) + len(quarantined())

    sent = _send_stream(postfix, markers)
    _kill_mid_stream(pk_stack, through)
    # Postfix took every message before anyone scanned it.
    assert [future.result(180).code for future in sent.values()] == [250] * MESSAGES

    def all_through() -> bool:
        postfix.flush()  # deferred mail goes now, not at Postfix's next queue run
        return through() == MESSAGES

    wait_for(all_through, 240, "every message delivered or quarantined")
    wait_for(lambda: not postfix.queue(), 60, "Postfix's queue to empty")
    viruses = {m for m, virus in markers.items() if virus}
    assert quarantined() == viruses
    _assert_scanned_once(hop, markers, set(markers) - viruses)
    assert "status=bounced" not in postfix.maillog()


def test_proxy_pool_killed_mid_stream(pk_stack, proxy):
    postfix, hop, _ = proxy
    _answered_each_once(pk_stack, postfix, hop, _markers("proxy"))


def test_milter_pool_killed_mid_stream(pk_stack, milter):
    postfix, hop = milter
    _answered_each_once(pk_stack, postfix, hop, _markers("milter"))


def _answered_each_once(stack: Stack, postfix: PostfixInstance, hop: NextHop, markers) -> None:
    """The ways before the queue: Postfix's client hears each message's answer."""
    sent = _send_stream(postfix, markers)
    _kill_mid_stream(stack, lambda: sum(future.done() for future in sent.values()))
    replies = {m: future.result(300) for m, future in sent.items()}
    assert all(r.code in (250, 550) or 400 <= r.code < 500 for r in replies.values()), replies
    accepted = {m for m, r in replies.items() if r.code == 250}
    for marker, virus in markers.items():
        assert not (virus and marker in accepted), f"{marker}: a virus accepted"
    assert all(replies[m].code != 550 for m, virus in markers.items() if not virus)
    wait_for(lambda: all(hop.copies(BOB, m.encode()) for m in accepted), 120,
             "every accepted message at the next hop")  # fmt: skip
    wait_for(lambda: not postfix.queue(), 60, "Postfix's queue to empty")
    _assert_scanned_once(hop, markers, accepted)
