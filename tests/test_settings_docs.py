"""docs/settings.md is what the settings' definitions say, and every MAILSCAN_* variable the
documentation names is one mailscan knows: the docs cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tasks.settings import variables
from tasks.settings.markdown import render

REPO = Path(__file__).resolve().parents[1]
SETTINGS_MD = REPO / "docs" / "settings.md"
# A variable's name, not a family of them such as MAILSCAN_AV_*.
VARIABLE = re.compile(r"MAILSCAN_[A-Z0-9_]+\b(?!\*)")


def test_docs_settings_md_is_rendered_from_the_definitions():
    assert SETTINGS_MD.read_text() == render(), (
        "docs/settings.md differs from the settings' definitions: edit them in "
        "tasks/settings/, then run `python -m tasks.settings --markdown > docs/settings.md`"
    )


def test_every_variable_is_documented():
    rendered = render()
    for name in variables():
        assert f"`{name}`" in rendered, name


@pytest.mark.parametrize("page", ["README.md", "docs/deploy.md", "docs/settings.md"])
def test_the_docs_name_only_variables_mailscan_knows(page: str):
    named = set(VARIABLE.findall((REPO / page).read_text()))
    assert named <= set(variables()), sorted(named - set(variables()))


def test_the_readme_settings_are_rows_of_docs_settings_md():
    readme_rows = [
        line for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("| `MAILSCAN_")
    ]  # fmt: skip
    assert readme_rows, "the README names no setting"
    documented = set(SETTINGS_MD.read_text().splitlines())
    assert [row for row in readme_rows if row not in documented] == []
