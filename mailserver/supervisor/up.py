"""``mailscan up``: the whole system in the foreground, restarted service by service when one
dies, stopped cleanly (no process left behind) on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

from mailserver.front.tls import StartTLS
from mailserver.milter.server import postfix_name
from mailserver.supervisor.localsentinel import primary_port, replica_port
from mailserver.supervisor.selfsigned import is_self_signed, with_self_signed
from mailserver.supervisor.services import node_name
from mailserver.supervisor.spamrules import body_rules_note
from mailserver.supervisor.stack import Stack
from tasks import plugins, sizing
from tasks.errors import StackError
from tasks.redisauth import masked, password, url_password
from tasks.settings import Settings
from tasks.sizing import Sizing
from tasks.wire.keys import POOLS

SUPERVISE_EVERY_S = 2.0
MAX_RESTARTS_PER_SERVICE = 5


def check_plugins(settings: Settings) -> None:
    """Fail before anything starts, not at the first message, when a pool names a plugin
    that cannot run (unknown, in the wrong pool, or missing a library)."""
    plugins.validate(settings)


def run_up(settings: Settings, self_signed_tls: bool = False) -> int:
    """``self_signed_tls``: the front offers STARTTLS with a certificate made in var/tls/."""
    if self_signed_tls:
        settings = with_self_signed(settings)
    check_plugins(settings)
    StartTLS.from_settings(settings)  # a bad pair stops here, before anything starts
    stack = Stack(settings)
    stopping = threading.Event()

    def stop(signum: int, _: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"starting mailscan (logs in {stack.log_dir}):")
    try:
        stack.start()
        print("\n".join(summary(settings, stack)))
        _supervise(stack, stopping)
    finally:
        print("stopping mailscan...")
        stack.stop()
        print("stopped.")
    return 0


def _pool_line(pool: str, settings: Settings, sized: Sizing) -> str:
    own, size = settings.pools[pool], sized.pools[pool]
    return (
        f"  {pool + ' pool':<13}{node_name(pool, settings)}, {size.count} processes "
        f"({size.why}), plugins {','.join(own.plugins)}"
    )


def _spamd_line(settings: Settings, sized: Sizing) -> str:
    children = sized.spamd_children
    return (
        f"  spamd        {settings.spamd}, {children.count} children ({children.why}; "
        f"{body_rules_note()})"
    )


def summary(settings: Settings, stack: Stack) -> list[str]:
    sized = sizing.plan(settings)
    return [
        "",
        "mailscan is up:",
        f"  SMTP front   {settings.smtp_host}:{settings.smtp_port} ({settings.mode}"
        f"{_tls_note(settings)})",
        *_milter_lines(settings),
        f"  Flower       http://127.0.0.1:{settings.flower_port}/",
        f"  console      http://{settings.console_host}:{settings.console_port}/ "
        "(add an administrator: mailscan console adduser NAME)",
        *redis_lines(settings),
        f"  clamd        {settings.clamd}",
        _spamd_line(settings, sized),
        *(_pool_line(pool, settings, sized) for pool in POOLS),
        f"  ops worker   {node_name('ops', settings)} (beat's tasks, crash report uploads)",
        f"  Maildir      {settings.maildir}",
        f"  quarantine   {settings.quarantine_dir}",
        f"  logs         {stack.log_dir}",
        f"Send a first test mail: see 'Send a first mail' in the README "
        f"(SMTP at {settings.smtp_host}:{settings.smtp_port}).",
        "Ctrl-C stops everything.",
    ]


def _milter_lines(settings: Settings) -> list[str]:
    if settings.milter is None:
        return []
    return [f"  milter       {settings.milter} (Postfix: smtpd_milters = "
            f"{postfix_name(settings.milter)})"]  # fmt: skip


def _tls_note(settings: Settings) -> str:
    if settings.tls_cert is None:
        return ""
    required = ", required" if settings.tls_required else ""
    if is_self_signed(settings):
        return f", STARTTLS{required} with a self-signed certificate: {settings.tls_cert}"
    return f", STARTTLS{required} with {settings.tls_cert}"


def redis_lines(settings: Settings) -> list[str]:
    note = _password_note(settings)
    if settings.local_redis != "sentinel":
        return [f"  Redis        {masked(settings.redis_url)}{note}"]
    sentinels = ",".join(str(s) for s in settings.redis_sentinels)
    return [
        f"  Redis        primary 127.0.0.1:{primary_port(settings)}, replica "
        f"127.0.0.1:{replica_port(settings)}{note}",
        f"  sentinels    {sentinels} (primary named {settings.redis_master})",
    ]


def _password_note(settings: Settings) -> str:
    """Where the password is, when the URL shown (masked) does not carry it."""
    if url_password(settings.redis_url) or not password(settings):
        return ""
    return f" (password in {settings.redis_password_file})"


def _supervise(stack: Stack, stopping: threading.Event) -> None:
    restarts: dict[str, int] = {}
    while not stopping.wait(SUPERVISE_EVERY_S):
        for name in stack.exited():
            restarts[name] = restarts.get(name, 0) + 1
            if restarts[name] > MAX_RESTARTS_PER_SERVICE:
                raise StackError(f"{name} keeps dying; last log lines:\n{stack.log_tail(name)}")
            print(f"{time.strftime('%H:%M:%S')} {name} exited; restarting")
        stack.revive()
