"""The classic comparison's report says what an administrator compares: the mean of the
rounds' ratios and their range, latency over every message of every round, and any reply
that was not 250 (the goal allows not one 4xx)."""

from __future__ import annotations

from typing import Any

from bench.classicreport import report


def _phase(path: str, number: int, rate: float, latencies: list[float], **outcomes: int) -> Any:
    return {
        "corpus": "sa-public",
        "concurrency": 2,
        "path": path,
        "round": number,
        "msg_per_s": rate,
        "records": [[i, 0.0, s, "250"] for i, s in enumerate(latencies)],
        "outcomes": {"250": len(latencies)} | outcomes,
        "cpu_ms_per_msg": {"mailserver": 8.0, "av-worker": 5.0, "spam-worker": 6.0, "redis": 1.0},
        "others": 0,
    }


def _results() -> dict[str, Any]:
    phases = []
    for number, (theirs, mine, alone) in enumerate([(10.0, 12.0, 11.0), (20.0, 18.0, 22.0)]):
        phases += [
            _phase("amavisd", number, theirs, [0.1, 0.2]),
            _phase("mailscan", number, mine, [0.3, 0.4], **({"4xx": 1} if number else {})),
            _phase("baseline", number, alone, [0.05]),
        ]
    return {"command": "python -m bench.classic", "sizing": ["spamd: 2 children"], "phases": phases}


def test_the_ratio_is_the_mean_of_the_rounds_with_its_range() -> None:
    row = next(line for line in report(_results()).splitlines() if line.startswith("| sa-public"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:4] == ["15.0", "15.0"]  # msg/s, means over the rounds
    assert cells[4] == "**1.05** (0.90-1.20)"  # 1.2 and 0.9, not 15 ÷ 15
    assert cells[5] == "1.10"  # the scanners alone
    assert cells[6:8] == ["100 / 200", "300 / 400"]  # p50 / p99 of every message
    assert cells[8] == "0 / 4xx 1"


def test_mailscans_own_cpu_is_its_front_pools_and_redis() -> None:
    text = report(_results())
    row = next(line for line in text.splitlines() if "| mailscan |" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3:8] == ["20.0", "8.0", "5.0", "6.0", "1.0"]
    assert "spamd: 2 children" in text
