"""Where mailscan's own CPU goes, function by function: py-spy samples every process of the
SMTP front and of both pools while the stack carries mail at a fixed rate.

    .venv/bin/pip install -e '.[bench]'      # once: py-spy (and matplotlib for the suite)
    .venv/bin/python -m bench.profile [--glue] [--corpus generated|sa-public] [--rate 6]
                                      [--seconds 60] [--warmup 5] [--all-threads]

The real stack (clamd, spamd, two processes per pool) by default, at six messages a second:
near the scanners' rate, where a message costs mailscan the most, and below the real stack's
capacity on generated mail (about 9-10 msg/s on 2 CPUs) with py-spy's own CPU taken away.
``--glue`` profiles the stub plugins instead. Writes ``bench/results/profile-<stack>-<time>/``:
``<service>.txt``, py-spy's collapsed stacks (flamegraph.pl, inferno and speedscope read
them), and ``summary.md`` (also printed): per service, the CPU per message in samples and
from /proc, and the functions with the most samples of their own and with what they call.

Only samples of threads holding the GIL count, by default: py-spy cannot tell a thread
blocked in a system call (a socket read, an fsync) from a running one, and counted them all:
two to four times the CPU that /proc reported. What the GIL holders leave out is the
kernel's work in those calls and C code that releases the GIL (hashing or compressing large
messages); ``--all-threads`` counts every sample. Reading another process needs ptrace: root, or
CAP_SYS_PTRACE in a container.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.arguments import number
from bench.floor import parse_with_corpus, samples_of
from bench.load import arrival_times, say
from bench.phases import PhaseInfo, opened
from bench.stacks import BenchStack, Plan, running

PROFILED = ("mailserver", "av-worker", "spam-worker")
RESULTS = Path(__file__).parent / "results"
# py-spy reads the processes without pausing them (--nonblocking): paused 200 times a second,
# the real stack passed 3.5 of the 10 msg/s offered, against 5.0 unpaused, and threads
# waiting on locks were counted as busy.
SAMPLES_PER_S = 100
TOP = 15
POOL_PROCESS_LOOP = "Worker.workloop (billiard/pool.py)"
REPOSITORY = str(Path(__file__).resolve().parent.parent) + "/"
LIBRARY_PREFIX = re.compile(r"^.*/(site-packages|lib/python3\.\d+)/")


def main() -> None:
    args = _arguments()
    py_spy = _py_spy()
    plan = Plan("glue", 2, glue=True) if args.glue else Plan("real c=2", 2)
    out = RESULTS / f"profile-{'glue' if args.glue else 'real'}-{time.strftime('%Y%m%d-%H%M%S')}"
    with running(plan) as bench:
        out.mkdir(parents=True)
        if args.warmup:
            _load(bench, args, args.warmup, "warm-up", 0)  # connections, plugins, imports
        leaders = {name: bench.stack.pid(name) for name in PROFILED}
        gil = not args.all_threads
        recorders = {name: _record(py_spy, leaders[name], name, out, gil) for name in leaders}
        phase = _load(bench, args, args.seconds, "profiled", 1)
        for recorder in recorders.values():
            recorder.send_signal(signal.SIGINT)  # py-spy writes its output and ends
        failed = [name for name, rec in recorders.items() if rec.wait(timeout=60)]
    if failed:
        sys.exit(f"py-spy failed for {', '.join(failed)}: see its log in {out}")
    stacks = {name: parse(tidy(out / f"{name}.txt")) for name in PROFILED}
    for name in PROFILED:
        (out / f"{name}.py-spy.log").unlink()
    summary = report(stacks, args, phase)
    (out / "summary.md").write_text(summary)
    print(summary)
    say(f"written to {os.path.relpath(out)}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue", action="store_true", help="stub plugins, no clamd or spamd")
    parser.add_argument("--rate", type=number(0.0), default=6.0, help="msg/s, Poisson arrivals")
    parser.add_argument("--seconds", type=number(0.0), default=60.0, help="of profiled load")
    parser.add_argument(
        "--warmup", type=number(0.0, above=False), default=5.0, help="seconds of load before"
    )
    parser.add_argument("--all-threads", action="store_true", help="not only GIL holders")
    args = parse_with_corpus(parser, default="generated")
    return args


def _py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not found:
        sys.exit("py-spy is not installed: .venv/bin/pip install -e '.[bench]'")
    return found


def _record(py_spy: str, pid: int, name: str, out: Path, gil: bool) -> subprocess.Popen:
    command = [py_spy, "record", "--pid", str(pid), "--subprocesses"]
    command += ["--rate", str(SAMPLES_PER_S), "--nonblocking"]
    command += ["--format", "raw", "--output", str(out / f"{name}.txt")]
    command += ["--gil"] if gil else []
    with (out / f"{name}.py-spy.log").open("w") as log:  # the child keeps its own copy
        recorder = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(0.5)  # attached before the load starts
    return recorder


def _load(
    bench: BenchStack, args: argparse.Namespace, seconds: float, label: str, seed: int
) -> dict:
    arrivals = arrival_times([(args.rate, seconds)], seed=seed)
    samples = samples_of(args.corpus, len(arrivals))
    messages = [s.render(f"{label}-{n}") for n, s in enumerate(samples)]
    info = PhaseInfo(label, "profile", "mailscan", args.corpus, rate=args.rate)
    return opened(bench, info, messages, arrivals)


def report(
    stacks: dict[str, Counter[tuple[str, ...]]], args: argparse.Namespace, phase: dict
) -> str:
    messages = phase["answered"]
    lines = [
        f"# Profile: {'glue' if args.glue else 'real'} stack, {args.corpus} mail",
        "",
        f"{messages} messages at {args.rate:g} msg/s in {phase['wall_s']:.1f} s "
        f"({phase['outcomes']}); py-spy at {SAMPLES_PER_S} samples/s"
        + (", every thread" if args.all_threads else ", threads holding the GIL")
        + f". A sample weighs 1000 / {SAMPLES_PER_S} / {messages} ms per message.",
    ]
    for name, service_stacks in stacks.items():
        from_proc = phase["cpu_ms_per_msg"].get(name, 0.0)
        lines += service_section(name, service_stacks, messages, from_proc)
    return "\n".join(lines) + "\n"


def tidy(path: Path) -> list[str]:
    """Rewrite py-spy's collapsed stacks without its "process N:<command line>" frames and
    with paths from the package or the repository on: the same for every machine. Returns
    the lines written."""
    lines = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        calls = [_short(frame) for frame in frames.split(";") if not frame.startswith("process ")]
        lines.append(f"{';'.join(calls)} {count}")
    path.write_text("\n".join(lines) + "\n")
    return lines


def _short(frame: str) -> str:
    """``name (path:line)`` with the path from the package (or the repository) on."""
    name, _, where = frame.partition(" (")
    return f"{name} ({LIBRARY_PREFIX.sub('', where.removeprefix(REPOSITORY))}"


def parse(lines: list[str]) -> Counter[tuple[str, ...]]:
    """Tidied collapsed stacks, each led by the role of the process it came from ("pool
    process" for a prefork child, "main" otherwise), with line numbers dropped so that a
    function's samples add up."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        frames, _, count = line.rpartition(" ")
        calls = [re.sub(r":\d+\)$", ")", frame) for frame in frames.split(";")]
        # A forked child's stack starts with its parent's frames: the pool's loop tells it.
        role = "pool process" if POOL_PROCESS_LOOP in calls else "main"
        stacks[(role, *calls)] += int(count)
    return stacks


def service_section(
    name: str, stacks: Counter[tuple[str, ...]], messages: int, from_proc: float
) -> list[str]:
    total = sum(stacks.values())
    per_message = 1000 / SAMPLES_PER_S / max(messages, 1)
    roles = Counter()
    for stack, count in stacks.items():
        roles[stack[0]] += count
    split = ", ".join(f"{role} {count * per_message:.2f}" for role, count in roles.items())
    lines = [
        "",
        f"## {name}: {total * per_message:.2f} ms per message in samples ({split}); "
        f"{from_proc:.2f} from /proc",
        "",
        "| with callees, ms/msg | own, ms/msg | function |",
        "| ---: | ---: | --- |",
    ]
    own, inclusive = _weights(stacks)
    for function, count in inclusive.most_common(TOP):
        cells = f"{count * per_message:.3f} | {own[function] * per_message:.3f}"
        lines.append(f"| {cells} | {function} |")
    lines += ["", "| own, ms/msg | function |", "| ---: | --- |"]
    lines += [f"| {c * per_message:.3f} | {f} |" for f, c in own.most_common(TOP)]
    return lines


def _weights(stacks: Counter[tuple[str, ...]]) -> tuple[Counter[str], Counter[str]]:
    """Samples in each function itself, and in it or anything it called (once per sample,
    however deep the recursion). Frames that nearly every sample of a process role passes
    through (its entry points and main loop) are left out of the second."""
    own: Counter[str] = Counter()
    by_role: dict[str, Counter[str]] = {}
    for (role, *calls), count in stacks.items():
        if calls:
            own[calls[-1]] += count
        for function in set(calls):
            by_role.setdefault(role, Counter())[function] += count
    inclusive: Counter[str] = Counter()
    for functions in by_role.values():
        everywhere = 0.9 * max(functions.values())
        inclusive.update({f: c for f, c in functions.items() if c < everywhere})
    return own, inclusive


if __name__ == "__main__":
    main()
