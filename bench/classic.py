"""mailscan against a classic content filter, each as shipped: Debian's amavisd-new (its own
defaults for children, Debian's SpamAssassin size limit, the stack's clamd; bench/amavisd.py)
and mailscan sized by ``mailscan up``'s own rules (tasks/sizing.py), no concurrency set on
either. The scanners alone (clamd and spamd called directly) are the third path: what no
glue at all would reach. The paths take turns on one stack, round after round.

    apt-get install --no-install-recommends amavisd-new      # once
    .venv/bin/python -m bench.classic [--corpora sa-public,generated] [--clients 2,4]
                                      [--messages 150] [--rounds 3] [--keep-var]

amavisd decodes each message into parts on disk and asks clamd to scan that folder
(CONTSCAN), as its Debian set-up does; mailscan streams the message to clamd (INSTREAM).
amavisd rejects viruses and tags spam, mailscan's pre-queue behaviour. Both get
SpamAssassin's local tests only (there is no network here). The next hop keeps nothing;
its CPU is on its own line, while mailscan's Maildir delivery is part of its front's.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from typing import Any

from bench import corpus
from bench.amavisd import CLASSIC, amavisd_service
from bench.arguments import listed, whole
from bench.classicreport import report
from bench.load import say
from bench.machine import REPO
from bench.phases import PhaseInfo, closed_blocks
from bench.stacks import BenchStack, Plan, listening, pick_ports, running
from bench.suite import CORPORA, DEFAULT_CORPUS, RESULTS_DIR
from bench.throughput import warm_up
from mailserver.supervisor.services import Service, binary
from tasks import sizing
from tasks.errors import StackError

NEXT_HOP = "next hop"
PATHS = ("baseline", CLASSIC, "mailscan")
SA_PUBLIC = REPO / DEFAULT_CORPUS


def main() -> None:
    args = _arguments()
    try:
        amavisd = binary("amavisd", "amavisd-new")
    except StackError:
        sys.exit("amavisd not found: apt-get install --no-install-recommends amavisd-new")
    command = shlex.join(["python", "-m", "bench.classic", *sys.argv[1:]])
    results: dict[str, Any] = {"command": command, "phases": []}
    with running(Plan("as shipped", None), keep_var=args.keep_var) as bench:
        results["sizing"] = sizing.plan(bench.settings).lines()
        _start_classic(bench, amavisd)
        for name in args.corpora:
            results["phases"] += _rounds(bench, name, args)
    text = report(results)
    folder = RESULTS_DIR / f"classic-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    (folder / "report.md").write_text(text + "\n")
    print(text)
    say(f"written to {folder}")


def _arguments() -> argparse.Namespace:
    """Corpora, client counts, messages per path and round, rounds, --keep-var; checked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", type=listed(str), default=list(CORPORA))
    parser.add_argument("--clients", type=listed(whole(1, 32)), default=[2, 4])
    parser.add_argument("--messages", type=whole(1), default=150, help="per path and round")
    parser.add_argument("--rounds", type=whole(1), default=3, help="turns of the three paths")
    parser.add_argument("--keep-var", action="store_true", help="keep the stack's folder and logs")
    args = parser.parse_args()
    check_corpora(parser, args.corpora)
    return args


def check_corpora(parser: argparse.ArgumentParser, corpora: list[str]) -> None:
    """An unknown corpus, or sa-public where it is missing: one line, before any stack."""
    unknown = set(corpora) - set(CORPORA)
    if unknown:
        parser.error(f"unknown corpus {', '.join(sorted(unknown))}: {', '.join(CORPORA)}")
    if "sa-public" in corpora and not SA_PUBLIC.is_dir():
        parser.error(f"no sa-public corpus at {SA_PUBLIC}")


def samples_of(name: str, count: int) -> list[corpus.Sample]:
    """``count`` messages of a corpus: generated mail (seed 6), or sa-public's repeated."""
    if name == "sa-public":
        return corpus.repeated(corpus.real(SA_PUBLIC), count)
    return corpus.generated(count, 6)


def _start_classic(bench: BenchStack, amavisd: str) -> None:
    """amavisd and its next hop as services of the bench's stack: started, measured and
    stopped like the others."""
    ports = pick_ports()
    hop = [sys.executable, "-m", "bench.nexthop", str(ports[NEXT_HOP])]
    services = {
        NEXT_HOP: Service(NEXT_HOP, hop, listening(ports[NEXT_HOP]), ports[NEXT_HOP]),
        CLASSIC: amavisd_service(bench, amavisd, ports["classic"], ports[NEXT_HOP]),
    }
    bench.stack.services.update(services)
    bench.stack.start(services, progress=say)
    bench.other_smtp[CLASSIC] = ports["classic"]


def _rounds(bench: BenchStack, name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """``args.rounds`` rounds of each client count; in each, one block per path, the order
    reversed every other round (a machine that speeds up or slows down weighs on all)."""
    samples = samples_of(name, args.messages)
    warm_up(bench, samples, max(args.clients), f"w{name[0]}", paths=PATHS)
    phases = []
    for number in range(args.rounds):
        for clients in args.clients:
            order = PATHS if number % 2 == 0 else PATHS[::-1]
            infos = [PhaseInfo(f"classic {p}", "classic", p, name, clients) for p in order]
            rendered = [
                [s.render(f"r{number}{p[0]}{clients}-{i}") for i, s in enumerate(samples)]
                for p in order
            ]
            done = closed_blocks(bench, infos, rendered, 1, limit_s=args.messages * 10.0)
            for phase in done:
                phase |= {"round": number}
            phases += done
            say(_progress(name, clients, number, done))
    return phases


def _progress(name: str, clients: int, number: int, done: list[dict[str, Any]]) -> str:
    rates = {phase["path"]: phase["msg_per_s"] for phase in done}
    ratio = rates["mailscan"] / rates[CLASSIC] if rates[CLASSIC] else float("nan")
    shown = ", ".join(f"{path} {rates[path]:.1f}" for path in PATHS)
    return f"{name} c={clients} round {number + 1}: {shown} msg/s; mailscan ÷ amavisd {ratio:.2f}"


if __name__ == "__main__":
    main()
