"""The amavisd-new configuration the benches write: its children as asked, else its own."""

from __future__ import annotations

import re
import shutil
from types import SimpleNamespace

from bench.amavisd import write_conf
from tasks.setting_parsers import Endpoint


def conf_text(tmp_path, monkeypatch, children: int | None) -> str:
    monkeypatch.setattr(shutil, "chown", lambda *args: None)  # no amavis user needed here
    clamd = Endpoint(host="127.0.0.1", port=3310)
    bench = SimpleNamespace(settings=SimpleNamespace(clamd=clamd))
    return write_conf(tmp_path / "amavisd", bench, 10024, 10025, children).read_text()


def test_children_asked_for_become_max_servers(tmp_path, monkeypatch) -> None:
    text = conf_text(tmp_path, monkeypatch, 3)
    assert "$max_servers = 3;" in text
    assert not re.search(r"^\s*\d+\s*$", text, re.MULTILINE), "a bare number is a Perl error"


def test_without_children_amavisd_keeps_its_default(tmp_path, monkeypatch) -> None:
    assert "max_servers" not in conf_text(tmp_path, monkeypatch, None)
