"""mailscan behind a private Postfix, the two SMTP ways: the ``main.cf`` and ``master.cf``
lines of each (the README's "Behind Postfix" shows them with its own ports; a test checks
that it does, line for line), and an SMTP front of its own for each on the session stack's
Redis and pools."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tasks.wire.keys import SPOOL_REPORT_KEY
from tests.postfix_instance import PostfixInstance

# After the queue: Postfix hands each message to mailscan ({scan}) with XFORWARD, and
# mailscan hands it back to a second smtpd ({back}) that takes it without filtering again.
FILTER_MAIN = {"content_filter": "scan:[127.0.0.1]:{scan}"}
FILTER_MASTER = (
    "scan      unix  -       -       n       -       10      smtp\n"
    "  -o smtp_send_xforward_command=yes\n"
    "  -o smtp_data_done_timeout=1200\n"
    "127.0.0.1:{back} inet n  -       n       -       -       smtpd\n"
    "  -o content_filter=\n"
    "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,"
    "no_milters,no_address_mappings\n"
    "  -o smtpd_relay_restrictions=permit_mynetworks,reject\n"
    "  -o mynetworks=127.0.0.0/8\n"
)
FILTER_MAILSCAN = {"mode": "post-queue", "delivery": "relay", "relay": "127.0.0.1:{back}",
                   "smtp_port": "{scan}", "xforward_networks": "127.0.0.1"}  # fmt: skip

# Before the queue: Postfix's smtpd for clients passes the session to mailscan ({scan}),
# whose reply the client hears; mailscan hands accepted mail to a second smtpd ({back}).
PROXY_SMTPD = ("smtpd_proxy_filter=127.0.0.1:{scan}", "smtpd_proxy_options=speed_adjust")
PROXY_MASTER = """\
127.0.0.1:{back} inet n  -       n       -       -       smtpd
  -o smtpd_client_restrictions=
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=permit_mynetworks,reject
  -o mynetworks=127.0.0.0/8
  -o receive_override_options=no_unknown_recipient_checks
"""
PROXY_MAILSCAN = {"mode": "pre-queue", "delivery": "relay", "relay": "127.0.0.1:{back}",
                  "smtp_port": "{scan}"}  # fmt: skip


@dataclass(frozen=True)
class Ports:
    """Postfix's smtpd for clients, mailscan's front, Postfix's smtpd behind it, the next
    hop, and the front's metrics."""

    client: int
    scan: int
    back: int
    next_hop: int
    metrics: int

    def fill(self, text: str) -> str:
        return text.format(scan=self.scan, back=self.back)


def filter_postfix(ports: Ports) -> PostfixInstance:
    main = {name: ports.fill(value) for name, value in FILTER_MAIN.items()}
    return PostfixInstance(ports.client, f"[127.0.0.1]:{ports.next_hop}", main=main,
                           services=ports.fill(FILTER_MASTER))  # fmt: skip


def proxy_postfix(ports: Ports) -> PostfixInstance:
    options = tuple(ports.fill(option) for option in PROXY_SMTPD)
    return PostfixInstance(ports.client, f"[127.0.0.1]:{ports.next_hop}",
                           services=ports.fill(PROXY_MASTER), smtpd_options=options)  # fmt: skip


def front_env(settings: Settings, name: str, ports: Ports, recipe: dict[str, str],
              base: dict[str, str] | None = None, **overrides: str) -> dict[str, str]:  # fmt: skip
    """``base``: the environment of the stack whose Redis and pools the front uses."""
    values = {**{key: ports.fill(value) for key, value in recipe.items()}, **overrides}
    return {
        **(os.environ if base is None else base),
        "MAILSCAN_VAR_DIR": str(settings.var_dir / name),
        "MAILSCAN_METRICS_PORT": str(ports.metrics),
        "MAILSCAN_HOSTNAME": f"mailscan-{name}.example.test",
        "MAILSCAN_DELIVERY_RETRY_S": "1",
        **{f"MAILSCAN_{key.upper()}": value for key, value in values.items()},
    }


def running_front(env: dict[str, str]) -> Iterator[tuple[Stack, Settings]]:
    """An SMTP front of its own (folders, ports, host name) on the stack's Redis and pools."""
    front_settings = load_settings(env)
    front = Stack(front_settings, env)
    front.start(["mailserver"], progress=lambda _: None)
    try:
        yield front, front_settings
    finally:
        front.stop()
        redisauth.connect(front_settings).hdel(SPOOL_REPORT_KEY, front_settings.hostname)
