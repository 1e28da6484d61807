"""Throughput at a fixed concurrency: mailscan end to end against the backend-only baseline on
the same stack (the sweep), and mailscan with stub plugins (glue only)."""

from __future__ import annotations

from typing import Any

from bench import checks
from bench.corpus import Sample, repeated
from bench.load import say
from bench.phases import PhaseInfo, closed, closed_blocks, outcome_by_kind
from bench.stacks import BenchStack

PATHS = ("baseline", "mailscan")
# Blocks per path in the sweep: enough turns that a drift in the machine's speed (other
# virtual machines on the host) reaches both paths, few enough that each block is long
# against the ramp-up and ramp-down of a closed loop.
SWEEP_BLOCKS = 4
WARMUP_MESSAGES = 4


def sweep(
    bench: BenchStack, corpora: dict[str, list[Sample]], count: int, limit_s: float
) -> list[dict[str, Any]]:
    """For each corpus: ``count`` messages through each path at the stack's concurrency, the
    paths taking turns in blocks (bench/phases.py, ``closed_blocks``)."""
    clients = bench.plan.concurrency
    phases = []
    for name, samples in corpora.items():
        chosen = repeated(samples, count)
        warm_up(bench, chosen, clients, f"w{clients}{name[0]}")
        infos = [PhaseInfo(f"c={clients} {name} {p}", "sweep", p, name, clients) for p in PATHS]
        say(f"c={clients} {name}: {count} messages per path, {clients} clients, in turns")
        rendered = [
            [s.render(f"{copy_prefix(info)}-{i}") for i, s in enumerate(chosen)] for info in infos
        ]
        measured = closed_blocks(bench, infos, rendered, SWEEP_BLOCKS, limit_s)
        for info, phase in zip(infos, measured, strict=True):
            phases.append(phase | after_phase(bench, phase, copy_prefix(info), chosen))
    return phases


def glue(
    bench: BenchStack, samples: list[Sample], levels: tuple[int, ...], limit_s: float
) -> list[dict[str, Any]]:
    """Stub plugins in both pools: SMTP, spool, Redis, both pools and delivery, no scanner."""
    warm_up(bench, samples, max(levels), "wg", paths=("mailscan",))
    phases = []
    for clients in levels:
        info = PhaseInfo(f"glue c={clients}", "glue", "mailscan", "generated", clients)
        say(f"{info.label}: {len(samples)} messages, {clients} clients")
        phases.append(_closed_with_checks(bench, info, samples, limit_s))
    return phases


def warm_up(
    bench: BenchStack,
    samples: list[Sample],
    clients: int,
    prefix: str,
    paths: tuple[str, ...] = PATHS,
) -> None:
    """A few messages through each path, not counted: connections, caches, lazy imports."""
    for path in paths:
        messages = [
            s.render(f"{prefix}{path[0]}-{i}") for i, s in enumerate(samples[:WARMUP_MESSAGES])
        ]
        closed(bench, PhaseInfo("warm-up", "warm-up", path, "", clients), messages, 60.0)


def _closed_with_checks(
    bench: BenchStack, info: PhaseInfo, chosen: list[Sample], limit_s: float
) -> dict[str, Any]:
    prefix = copy_prefix(info)
    messages = [s.render(f"{prefix}-{i}") for i, s in enumerate(chosen)]
    phase = closed(bench, info, messages, limit_s)
    return phase | after_phase(bench, phase, prefix, chosen)


def copy_prefix(info: PhaseInfo) -> str:
    """A short, unique prefix of the X-Bench-Id of the phase's copies."""
    return "-".join(part[:4] for part in info.label.replace("=", "").split())


def after_phase(
    bench: BenchStack, phase: dict[str, Any], prefix: str, chosen: list[Sample]
) -> dict[str, Any]:
    """Outcomes per kind of message and, for mailscan, what reached the Maildir."""
    extra: dict[str, Any] = {"by_kind": outcome_by_kind(phase, [s.kind for s in chosen])}
    if phase["path"] == "mailscan":
        found = checks.delivered(bench.settings.maildir, prefix + "-")
        extra["fates"] = dict(checks.fates(found, phase["records"], prefix))
        marks = {key: marks[0] for key, marks in found.items()}
        extra["spam_flagged"] = sum(mark == "spam" for mark in marks.values())
        extra["spam_unscanned"] = [
            index for index, *_ in phase["records"] if marks.get(f"{prefix}-{index}") == "unscanned"
        ]
    return extra
