"""The two ways through a private Postfix that bench/behind_postfix.py measures, added to a
bench stack: ``mailscan milter``, amavisd, a counting next hop, and one Postfix with an
smtpd for each way. The Postfix lines are the README's "Behind Postfix" recipes, as the
tests run them (tests/postfix_instance.py and tests/behind_postfix.py, which need no pytest).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.classic import CLASSIC, NEXT_HOP
from bench.load import say
from bench.stacks import LOOPBACK, BenchStack, listening, pick_ports
from mailserver.supervisor.services import FRONT_MALLOC, Service
from tests.behind_postfix import FILTER_MAIN, FILTER_MASTER, Ports
from tests.postfix_instance import PostfixInstance

MILTER = "milter"
PATHS = (MILTER, CLASSIC)
POSTFIX = "postfix"
QUEUE_DRAIN_S = 120.0
# The README's milter lines for main.cf; the content filter's smtpd turns them off.
MILTER_MAIN = {
    "smtpd_milters": "inet:{milter}",
    "non_smtpd_milters": "",
    "milter_protocol": "6",
    "milter_default_action": "tempfail",
}
FILTER_SMTPD = """\
127.0.0.1:{client} inet n  -       n       -       -       smtpd
  -o content_filter={content_filter}
  -o smtpd_milters=
"""

AmavisdFactory = Callable[[int, int, int, str], Service]  # port, next hop, children, destiny


@dataclass
class PostfixPaths:
    postfix: PostfixInstance
    ports: dict[str, int]  # each path's smtpd for clients
    count_file: Path  # the next hop's count (bench/nexthop.py)

    def await_empty_queue(self) -> int:
        """Wait until Postfix's queue is empty; return how many messages were in it."""
        left = len(self.postfix.queue())
        deadline = time.monotonic() + QUEUE_DRAIN_S
        while self.postfix.queue() and time.monotonic() < deadline:
            self.postfix.flush()
            time.sleep(1.0)
        return left


def start_paths(bench: BenchStack, clients: int, amavisd: AmavisdFactory) -> PostfixPaths:
    """The next hop, the milter front, amavisd (``clients`` children) and Postfix, started
    beside the bench's stack; Postfix's CPU is measured as a group of its own."""
    ports = pick_ports()
    count_file = bench.settings.var_dir / "next-hop.count"
    hop = [sys.executable, "-m", "bench.nexthop", str(ports["next hop"]), str(count_file)]
    services = {
        NEXT_HOP: Service(NEXT_HOP, hop, listening(ports["next hop"]), ports["next hop"]),
        MILTER: _milter(bench, ports),
        # After the queue a refusal would become a bounce: viruses are dropped.
        CLASSIC: amavisd(ports["classic"], ports["reinjection"], clients, "D_DISCARD"),
    }
    bench.stack.services.update(services)
    bench.stack.start(services, progress=say)
    postfix = _postfix(ports, clients)
    postfix.start()
    say(f"  postfix      ready in {postfix.root}")
    master = int((postfix.root / "queue" / "pid" / "master.pid").read_text().split()[0])
    bench.other_groups[master] = POSTFIX
    path_ports = {MILTER: ports["postfix milter"], CLASSIC: ports["postfix filter"]}
    return PostfixPaths(postfix, path_ports, count_file)


def _milter(bench: BenchStack, ports: dict[str, int]) -> Service:
    """``mailscan milter`` with a folder, host name and metrics port of its own, on the
    stack's Redis and pools."""
    env = {
        **FRONT_MALLOC,
        "MAILSCAN_MILTER": f"{LOOPBACK}:{ports['milter']}",
        "MAILSCAN_VAR_DIR": str(bench.settings.var_dir / "milter"),
        # Its folder is its own, the Redis password is the stack's.
        "MAILSCAN_REDIS_PASSWORD_FILE": str(bench.settings.redis_password_file),
        "MAILSCAN_HOSTNAME": "milter.bench.localdomain",
        "MAILSCAN_METRICS_PORT": str(ports["milter metrics"]),
    }
    argv = [sys.executable, "-m", "mailserver.cli", "milter"]
    return Service(MILTER, argv, listening(ports["milter"]), ports["milter"], env=env)


def _postfix(ports: dict[str, int], children: int) -> PostfixInstance:
    """One Postfix: the milter's smtpd for clients (main.cf's milter lines), the content
    filter's smtpd for clients, the scan transport to amavisd and the reinjection smtpd."""
    recipe = Ports(
        client=ports["postfix filter"],
        scan=ports["classic"],
        back=ports["reinjection"],
        next_hop=ports["next hop"],
        metrics=0,
    )
    content_filter = recipe.fill(FILTER_MAIN["content_filter"])
    milter = f"{LOOPBACK}:{ports['milter']}"
    main = {name: value.format(milter=milter) for name, value in MILTER_MAIN.items()}
    # As many deliveries to amavisd at once as it has children, as its Postfix notes advise.
    main["scan_destination_concurrency_limit"] = str(children)
    services = FILTER_SMTPD.format(client=recipe.client, content_filter=content_filter)
    return PostfixInstance(
        ports["postfix milter"],
        f"[{LOOPBACK}]:{ports['next hop']}",
        main=main,
        services=services + recipe.fill(FILTER_MASTER),
    )
