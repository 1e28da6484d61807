"""The README's "Behind Postfix" recipes are the ones the tests run, with its own ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import behind_postfix as recipes

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SECTION = README.split("## Behind Postfix", 1)[1].split("\n## ", 1)[0]
SHOWN = recipes.Ports(client=25, scan=10024, back=10025, next_hop=0, metrics=0)


def _mailscan_lines(recipe: dict[str, str]) -> list[str]:
    return [f"MAILSCAN_{key.upper()}={SHOWN.fill(value)}" for key, value in recipe.items()]


@pytest.mark.parametrize(
    "lines",
    [
        [f"{name} = {SHOWN.fill(value)}" for name, value in recipes.FILTER_MAIN.items()],
        SHOWN.fill(recipes.FILTER_MASTER).splitlines(),
        _mailscan_lines(recipes.FILTER_MAILSCAN),
        [f"  -o {SHOWN.fill(option)}" for option in recipes.PROXY_SMTPD],
        SHOWN.fill(recipes.PROXY_MASTER).splitlines(),
        _mailscan_lines(recipes.PROXY_MAILSCAN),
    ],
    ids=["filter main.cf", "filter master.cf", "filter mailscan", "proxy smtpd",
         "proxy master.cf", "proxy mailscan"],
)  # fmt: skip
def test_the_readme_shows_each_line_the_tests_run(lines):
    shown = SECTION.splitlines()
    missing = [line for line in lines if line not in shown]
    assert not missing, f"README's Behind Postfix lacks: {missing}"
