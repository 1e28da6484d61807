"""Whether spamd runs SpamAssassin's body rules compiled: the check `mailscan up` reports, on
made-up site configurations, and against what SpamAssassin itself says on this machine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mailserver.supervisor.spamrules import body_rules_compiled, body_rules_note

LOAD = "loadplugin Mail::SpamAssassin::Plugin::Rule2XSBody\n"


def site_and_rules(tmp_path: Path, pre_text: str, with_rules: bool) -> tuple[Path, Path]:
    site, compiled = tmp_path / "site", tmp_path / "compiled"
    site.mkdir()
    (site / "init.pre").write_text("loadplugin Mail::SpamAssassin::Plugin::URIDNSBL\n")
    (site / "sa-compile.pre").write_text(pre_text)
    if with_rules:
        module = compiled / "5.036" / "4.000001" / "Mail" / "SpamAssassin" / "CompiledRegexps"
        module.mkdir(parents=True)
        (module / "body_0.pm").write_text("1;\n")
    return site, compiled


def test_loaded_plugin_with_a_compiled_rule_set_counts_as_compiled(tmp_path):
    site, compiled = site_and_rules(tmp_path, f"# compiled rules\n{LOAD}", with_rules=True)
    assert body_rules_compiled(site, compiled)
    assert body_rules_note(site, compiled) == "body rules compiled"


@pytest.mark.parametrize("pre_text", [f"# {LOAD}", ""])  # commented out, as in v320.pre
def test_without_the_plugin_loaded_the_note_says_what_to_install(tmp_path, pre_text):
    site, compiled = site_and_rules(tmp_path, pre_text, with_rules=True)
    assert not body_rules_compiled(site, compiled)
    assert "install the sa-compile package" in body_rules_note(site, compiled)


def test_a_loaded_plugin_without_its_rule_set_says_to_compile_again(tmp_path):
    site, compiled = site_and_rules(tmp_path, LOAD, with_rules=False)
    assert not body_rules_compiled(site, compiled)
    assert "run dpkg-reconfigure sa-compile" in body_rules_note(site, compiled)


def test_a_missing_site_configuration_is_not_compiled(tmp_path):
    assert not body_rules_compiled(tmp_path / "none", tmp_path / "none")


@pytest.mark.integration
def test_the_check_agrees_with_spamassassin_on_this_machine():
    spamassassin = shutil.which("spamassassin") or "/usr/bin/spamassassin"
    lint = subprocess.run(
        [spamassassin, "-L", "-D", "zoom", "--lint"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    used = re.search(r"able to use (\d+)/\d+ 'body_0' compiled rules", lint.stderr)
    spamassassin_says = bool(used and int(used[1]) > 0)
    assert body_rules_compiled() == spamassassin_says, lint.stderr[-2000:]
    if shutil.which("sa-compile"):
        # scripts/bootstrap installs sa-compile, whose package compiles the rules at once
        assert spamassassin_says, lint.stderr[-2000:]
