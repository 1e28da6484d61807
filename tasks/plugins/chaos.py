"""Fault injection, for tests and drills only: enabled only when a pool lists ``chaos`` among
its plugins. Each fault fires on messages holding ``MAILSCAN-CHAOS-<ACTION>`` (upper case)
or on a chosen fraction of messages, as ``MAILSCAN_CHAOS`` says (default: every action, on
its marker). Without a fault to fire it answers clean (av) or ham (spam)."""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NoReturn

from celery.utils.log import get_task_logger

from tasks.errors import BackendUnavailable
from tasks.plugins.base import Message, Plugin, Verdict

# A task logger: in a worker's log each line names the job it came from.
log = get_task_logger(__name__)
LEAK_MB = 64
HUGE_ERROR_CHARS = 1024 * 1024
# Long enough to keep a job in flight while a test breaks something under it, well below any
# soft limit the tests set.
SLOW_S = 1.5
_leaked: list[bytearray] = []


def marker(action: str) -> bytes:
    return b"MAILSCAN-CHAOS-" + action.upper().encode()


@dataclass
class ChaosPlugin(Plugin):
    """Freezes, crashes, leaks or fails on purpose, so isolation can be shown for real."""

    name: ClassVar[str] = "chaos"
    pools: ClassVar[tuple[str, ...]] = ("av", "spam")

    def scan(self, message: Message) -> Verdict:
        started = time.perf_counter()
        for action, trigger in self.settings.chaos:
            if _fires(trigger, action, message):
                # Said before it fires (a crash leaves no later chance): a drill can then
                # match every fault it injected with the crashdump it must leave.
                log.warning("chaos: injecting %s", action)
                FAULTS[action](self)
        return self.verdict("clean" if self.pool == "av" else "ham", started)


def _fires(trigger: str, action: str, message: Message) -> bool:
    if trigger == "marker":
        return marker(action) in message
    return random.random() < float(trigger)


def freeze_python(_: ChaosPlugin) -> None:
    while True:  # a busy loop in Python: the soft time limit can interrupt it
        time.sleep(0.05)


def slow(_: ChaosPlugin) -> None:
    """A job that takes its time and then ends well."""
    time.sleep(SLOW_S)


def freeze_c(_: ChaosPlugin) -> None:
    # Blocks every signal in this thread, then sleeps inside libc through PyDLL, which keeps
    # the GIL: no Python signal handler can run, so only the hard time limit ends it.
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    ctypes.PyDLL(None).sleep(3600)


def segfault(_: ChaosPlugin) -> NoReturn:
    ctypes.string_at(0)  # reads address 0: a real SIGSEGV
    raise AssertionError("unreachable")


def abort(_: ChaosPlugin) -> NoReturn:
    os.abort()


def exit_abruptly(_: ChaosPlugin) -> NoReturn:
    os._exit(3)


def leak(_: ChaosPlugin) -> None:
    block = bytearray(LEAK_MB * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it counts in RSS
    _leaked.append(block)


def fail(_: ChaosPlugin) -> NoReturn:
    raise RuntimeError("chaos: injected plugin failure")


def fail_hugely(_: ChaosPlugin) -> NoReturn:
    """An exception whose message is a megabyte, as a plugin quoting a whole buffer does."""
    raise RuntimeError("chaos: injected failure quoting " + "x" * HUGE_ERROR_CHARS)


def drop_connection(plugin: ChaosPlugin) -> NoReturn:
    """Starts an INSTREAM to clamd and resets the connection mid-request, as a broken
    network or a dying daemon would; the plugin then reports a connection failure."""
    endpoint = plugin.settings.clamd
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as sock:
            sock.sendall(b"nINSTREAM\n" + struct.pack("!L", 4) + b"half")
            # Linger 0: close sends a RST instead of an orderly FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError as err:
        raise BackendUnavailable(f"chaos: connection failed: {err}") from err
    raise BackendUnavailable("chaos: connection to clamd reset mid-request")


FAULTS: dict[str, Callable[[ChaosPlugin], None]] = {
    "freeze-python": freeze_python,
    "freeze-c": freeze_c,
    "segfault": segfault,
    "abort": abort,
    "exit": exit_abruptly,
    "leak": leak,
    "raise": fail,
    "huge-error": fail_hugely,
    "drop-connection": drop_connection,
    "slow": slow,
}
