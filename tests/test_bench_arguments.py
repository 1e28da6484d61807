"""The benchmarks refuse values out of range before they start anything: a negative size, a
rate of zero or a count that is not a number is one clear line naming the option, not a stack
started for a traceback, or a load that never ends."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bench.arguments import listed, number, whole

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("command", "refusal"),
    [
        ("bench.suite --messages 5", "argument --messages: 5 is out of range: from 10 to 20000"),
        ("bench.recovery --soak-messages 0", "argument --soak-messages: 0 is out of range"),
        ("bench.suite --concurrency 2,x", "argument --concurrency: 'x' is not a whole number"),
        ("bench.suite --concurrency 0", "argument --concurrency: 0 is out of range: from 1 to 32"),
        ("bench.classic --rounds 0", "argument --rounds: 0 is out of range: at least 1"),
    ],
)
def test_a_bench_refuses_a_value_out_of_range_in_one_line(command: str, refusal: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *command.split()],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert refusal in done.stderr
    assert "Traceback" not in done.stderr
    assert "starting" not in done.stderr  # no stack was started


def test_values_in_range_come_back_as_numbers() -> None:
    assert whole(1, 32)("8") == 8
    assert number(0.0)("2.5") == 2.5
    assert number(0.0, above=False)("0") == 0.0
    assert listed(number(0.0))("10, 40,") == [10.0, 40.0]
    assert listed(whole(1, 32))("2,4,8") == [2, 4, 8]


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (whole(1), "0"),
        (whole(1, 32), "33"),
        (whole(1), "2.5"),
        (number(0.0), "0"),
        (number(0.0), "nan"),
        (number(0.0, 10.0), "11"),
        (number(1.0, above=False), "0.5"),
        (listed(whole(1)), " , "),
    ],
)
def test_values_out_of_range_are_refused(parse, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)
