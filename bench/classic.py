"""A classic content filter beside mailscan and the scanners alone: Debian's amavisd-new, run
as the SMTP proxy a classic set-up puts behind its MTA, with its own embedded SpamAssassin and
the stack's clamd, handing what it accepts to a next hop that discards it. The three paths
take turns in blocks on one stack, so their ratios to the scanners alone come from one run.

    apt-get install --no-install-recommends amavisd-new      # once
    .venv/bin/python -m bench.classic [--corpus sa-public|generated] [--concurrency 2]
                                      [--messages 200] [--blocks 4] [--keep-var]

amavisd gets as many children as spamd and each pool (``--concurrency``), SpamAssassin's
local tests only and the same 1 MB limit for spam checks as mailscan and the baseline; it
rejects viruses, tags spam and keeps no quarantine, which is mailscan's pre-queue behaviour.
It decodes each message into parts on disk and asks clamd to scan that folder (CONTSCAN), as
its Debian set-up does; mailscan streams the whole message to clamd (INSTREAM). The next hop
(bench/nexthop.py) keeps nothing; its CPU is reported on its own line, while mailscan's
Maildir delivery is part of its front's.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import sys
from pathlib import Path
from typing import Any

from bench import corpus
from bench.arguments import whole
from bench.cpu import CLIENT, MAILSCAN_GROUPS
from bench.load import say
from bench.machine import REPO
from bench.phases import PhaseInfo, closed_blocks
from bench.stacks import LOOPBACK, BenchStack, Plan, listening, pick_ports, running
from bench.suite import CORPORA, DEFAULT_CORPUS
from bench.throughput import warm_up
from mailserver.supervisor.services import Service, binary
from tasks.errors import StackError

CLASSIC = "amavisd"
NEXT_HOP = "next hop"
PATHS = ("baseline", CLASSIC, "mailscan")
SA_PUBLIC = REPO / DEFAULT_CORPUS
SHOWN = ("mailscan's own", CLASSIC, "clamd", "spamd", NEXT_HOP, CLIENT)


def main() -> None:
    args = _arguments()
    try:
        amavisd = binary("amavisd", "amavisd-new")
    except StackError:
        sys.exit("amavisd not found: apt-get install --no-install-recommends amavisd-new")
    plan = Plan(f"real c={args.concurrency}", args.concurrency)
    with running(plan, keep_var=args.keep_var) as bench:
        _start_classic(bench, amavisd, args.concurrency)
        phases = _sweep(bench, args)
    print(report(phases, args))


def _arguments() -> argparse.Namespace:
    """Clients, messages per path, blocks, --keep-var and the corpus, checked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--concurrency", type=whole(1, 32), default=2, help="clients, children, pools"
    )
    parser.add_argument("--messages", type=whole(1), default=200, help="per path")
    parser.add_argument("--blocks", type=whole(1), default=4, help="turns of the three paths")
    parser.add_argument("--keep-var", action="store_true", help="keep the stack's folder and logs")
    parser.add_argument("--corpus", choices=CORPORA, default="sa-public")
    args = parser.parse_args()
    if args.corpus == "sa-public" and not SA_PUBLIC.is_dir():
        parser.error(f"no sa-public corpus at {SA_PUBLIC}")
    return args


def samples_of(name: str, count: int) -> list[corpus.Sample]:
    """``count`` messages of a corpus: generated mail (seed 6), or sa-public's repeated."""
    if name == "sa-public":
        return corpus.repeated(corpus.real(SA_PUBLIC), count)
    return corpus.generated(count, 6)


def _start_classic(bench: BenchStack, amavisd: str, children: int) -> None:
    """amavisd and its next hop as services of the bench's stack: started, measured and
    stopped like the others."""
    ports = pick_ports()
    hop = [sys.executable, "-m", "bench.nexthop", str(ports["next hop"])]
    services = {
        NEXT_HOP: Service(NEXT_HOP, hop, listening(ports["next hop"]), ports["next hop"]),
        CLASSIC: amavisd_service(bench, amavisd, ports["classic"], ports["next hop"], children),
    }
    bench.stack.services.update(services)
    bench.stack.start(services, progress=say)
    bench.other_smtp[CLASSIC] = ports["classic"]


def amavisd_service(
    bench: BenchStack,
    amavisd: str,
    port: int,
    next_hop: int,
    children: int,
    virus_destiny: str = "D_REJECT",
) -> Service:
    """amavisd on ``port``, handing what it passes to ``next_hop``; its home in the stack's
    folder. ``virus_destiny``: D_REJECT before the queue, D_DISCARD behind Postfix's
    ``content_filter`` (a refusal there becomes a bounce)."""
    home = bench.settings.var_dir / "amavisd"
    conf = write_conf(home, bench, port, next_hop, children, virus_destiny)
    return Service(
        CLASSIC,
        [amavisd, "-c", str(conf), "foreground"],
        listening(port),
        port,
        ready_timeout_s=180.0,  # it compiles SpamAssassin's rules before it listens
    )


def write_conf(
    home: Path,
    bench: BenchStack,
    port: int,
    next_hop: int,
    children: int,
    virus_destiny: str = "D_REJECT",
) -> Path:
    """amavisd's configuration and its home (owned by its user when we are root)."""
    for folder in ("tmp", "db", "var"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    user = "amavis" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        for folder in (home, *home.iterdir()):
            shutil.chown(folder, user, user)
    clamd = bench.settings.clamd
    # Beside its home, not in it: amavisd refuses a configuration its own user could change.
    conf = home.with_name("amavisd.conf")
    conf.write_text(
        CONF.format(
            home=home,
            user=user,
            children=children,
            loopback=LOOPBACK,
            port=port,
            next_hop=next_hop,
            clamd=clamd.socket_path or f"{clamd.host}:{clamd.port}",
            spam_max_bytes=bench.settings.spam_max_bytes,
            virus_destiny=virus_destiny,
        )
    )
    return conf


CONF = """use strict;
$MYHOME = '{home}';
$TEMPBASE = "$MYHOME/tmp";
$db_home = "$MYHOME/db";
$helpers_home = "$MYHOME/var";
$pid_file = "$MYHOME/amavisd.pid";
$lock_file = "$MYHOME/amavisd.lock";
$daemon_user = '{user}'; $daemon_group = '{user}';
$max_servers = {children};
$myhostname = 'bench.localdomain'; $mydomain = 'localdomain';
@mynetworks = qw(127.0.0.0/8);
@local_domains_maps = (1);
$inet_socket_bind = '{loopback}'; $inet_socket_port = {port}; @inet_acl = qw({loopback});
$forward_method = 'smtp:[{loopback}]:{next_hop}'; $notify_method = $forward_method;
$DO_SYSLOG = 0; $LOGFILE = "$MYHOME/amavis.log"; $log_level = 0;
$enable_db = 0; $enable_zmq = 0; $nanny_details_level = 0;
$enable_dkim_verification = 0; $enable_dkim_signing = 0;
$sa_local_tests_only = 1; $sa_mail_body_size_limit = {spam_max_bytes};
$sa_tag_level_deflt = -999; $sa_tag2_level_deflt = 5.0; $sa_kill_level_deflt = 9999;
$final_virus_destiny = {virus_destiny}; $final_banned_destiny = D_PASS;
$final_spam_destiny = D_PASS; $final_bad_header_destiny = D_PASS;
$virus_quarantine_method = undef; $spam_quarantine_method = undef;
$banned_files_quarantine_method = undef; $bad_header_quarantine_method = undef;
$virus_admin = undef; $spam_admin = undef;
@av_scanners = (['ClamAV-clamd', \\&ask_daemon, ["CONTSCAN {{}}\\n", "{clamd}"],
  qr/\\bOK$/m, qr/\\bFOUND$/m, qr/^.*?: (?!Infected Archive)(.*) FOUND$/m ]);
@av_scanners_backup = ();
1;
"""


def _sweep(bench: BenchStack, args: argparse.Namespace) -> list[dict[str, Any]]:
    clients = args.concurrency
    samples = samples_of(args.corpus, args.messages)
    warm_up(bench, samples, clients, "wc", paths=PATHS)
    infos = [PhaseInfo(f"classic {p}", "classic", p, args.corpus, clients) for p in PATHS]
    rendered = [[s.render(f"cl{p[0]}-{i}") for i, s in enumerate(samples)] for p in PATHS]
    say(f"{args.corpus}: {args.messages} messages per path, {clients} clients, in turns")
    return closed_blocks(bench, infos, rendered, args.blocks, limit_s=args.messages * 10.0)


def report(phases: list[dict[str, Any]], args: argparse.Namespace) -> str:
    baseline = phases[0]["msg_per_s"]
    lines = [
        f"{args.corpus} mail, {args.messages} messages per path, {args.concurrency} clients "
        f"(spamd children, pool processes, amavisd children), {args.blocks} blocks in turns",
        "",
        "| path | msg/s | ratio to the scanners alone | p50 ms | p99 ms | replies | "
        + " | ".join(f"{g} CPU ms/msg" for g in SHOWN)
        + " |",
        "| --- |" + " ---: |" * (5 + len(SHOWN)),
    ]
    lines += [_row(phase, baseline) for phase in phases]
    lines += ["", "Most common replies:", ""]
    lines += [f"- {phase['path']}: {phase['replies']}" for phase in phases]
    return "\n".join(lines)


def _row(phase: dict[str, Any], baseline: float) -> str:
    cpu = dict(phase["cpu_ms_per_msg"])
    cpu["mailscan's own"] = sum(cpu.get(g, 0.0) for g in MAILSCAN_GROUPS)
    latency = phase["latency_ms"]
    replies = ", ".join(f"{k} {v}" for k, v in sorted(phase["outcomes"].items()))
    cells = [
        phase["path"],
        f"{phase['msg_per_s']:.1f}",
        f"**{phase['msg_per_s'] / baseline:.2f}**" if baseline else "n/a",
        f"{latency['p50']:.0f}",
        f"{latency['p99']:.0f}",
        replies,
        *(f"{cpu.get(g, 0.0):.1f}" for g in SHOWN),
    ]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
