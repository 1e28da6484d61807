"""The stack starts services that need nothing of each other at once (clamd and spamd, the
pools), and every other one only when those before it are ready: what an administrator
notices as a shorter `mailscan up`, never a front that starts before its pools. It stops
them in the reverse order, those of one set at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from mailserver.supervisor.service import Service
from mailserver.supervisor.stack import Stack, waves
from tasks.settings import load_settings


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    made = Stack(load_settings({"MAILSCAN_VAR_DIR": str(tmp_path)}), env={})
    yield made
    made.stop()


def test_neighbours_of_one_set_form_one_wave() -> None:
    names = ["redis", "clamd", "spamd", "av-worker", "spam-worker", "mailserver"]
    assert waves(names) == [
        ["redis"], ["clamd", "spamd"], ["av-worker", "spam-worker"], ["mailserver"],
    ]  # fmt: skip
    assert waves(["spamd", "redis", "clamd"]) == [["spamd"], ["redis"], ["clamd"]]


def test_clamd_and_spamd_start_together(stack: Stack) -> None:
    # Each is ready only once the other was started: one after the other never would be.
    def started(other: str) -> Callable[[], bool]:
        return lambda: stack.services[other].process is not None

    stack.services = {
        name: Service(name, ["sleep", "30"], started(other), ready_timeout_s=3.0)
        for name, other in (("clamd", "spamd"), ("spamd", "clamd"))
    }
    stack.start(progress=lambda _: None)
    assert stack.started == ["clamd", "spamd"]


def test_the_front_starts_only_when_both_pools_are_ready(stack: Stack) -> None:
    events: list[str] = []
    polls = {"av-worker": 0, "spam-worker": 0}

    def ready_after_polls(name: str) -> Callable[[], bool]:
        def ready() -> bool:
            polls[name] += 1
            if polls[name] < 3:
                return False
            events.append(f"ready {name}")
            return True

        return ready

    def service(name: str, ready: Callable[[], bool]) -> Service:
        spawned = lambda: events.append(f"spawn {name}")  # noqa: E731
        return Service(name, ["sleep", "30"], ready, ready_timeout_s=5.0, before_start=spawned)

    stack.services = {
        name: service(name, ready_after_polls(name)) for name in ("av-worker", "spam-worker")
    }
    stack.services["mailserver"] = service("mailserver", lambda: True)
    stack.start(progress=lambda _: None)
    assert events[:2] == ["spawn av-worker", "spawn spam-worker"]
    assert events[-1] == "spawn mailserver"
    assert set(events[2:4]) == {"ready av-worker", "ready spam-worker"}


def test_both_pools_stop_at_once_after_the_front_and_before_redis(stack: Stack, tmp_path) -> None:
    """Each pool takes a moment to finish on SIGTERM, as a pool finishing its jobs does: they
    are told at once and finish side by side, after the front has gone and before Redis is
    told."""
    events = tmp_path / "events"

    def service(name: str, finishing_s: float) -> Service:
        listening = tmp_path / f"{name}.listening"  # its trap is set: ready to be told
        script = (
            f"trap 'echo {name}:told >> {events}; sleep {finishing_s}; "
            f"echo {name}:gone >> {events}; exit 0' TERM; touch {listening}; "
            "while :; do sleep 0.05; done"
        )
        return Service(name, ["sh", "-c", script], listening.exists, ready_timeout_s=5.0)

    stack.services = {
        "redis": service("redis", 0),
        "av-worker": service("av-worker", 0.5),
        "spam-worker": service("spam-worker", 0.5),
        "mailserver": service("mailserver", 0),
    }
    stack.start(progress=lambda _: None)
    stack.stop()
    seen = events.read_text().split()
    assert seen[:2] == ["mailserver:told", "mailserver:gone"]
    assert set(seen[2:4]) == {"av-worker:told", "spam-worker:told"}, "one pool after the other"
    assert set(seen[4:6]) == {"av-worker:gone", "spam-worker:gone"}
    assert seen[6:] == ["redis:told", "redis:gone"]
