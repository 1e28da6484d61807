"""Every package mailscan imports is one it declares: an install from pyproject.toml alone
must run it, not one where a dependency of a dependency happened to bring the package along."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("tasks", "mailserver", "beat")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0])
            for spec in project["dependencies"]}  # fmt: skip


def imported_modules() -> dict[str, str]:
    """Top-level module -> a file of ours that imports it (absolute imports only)."""
    found: dict[str, str] = {}
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared_in_pyproject():
    distributions = packages_distributions()
    wanted = declared()
    missing = []
    for module, where in sorted(imported_modules().items()):
        if module in sys.stdlib_module_names or module in OURS:
            continue
        provided_by = {_normal(name) for name in distributions.get(module, [])}
        if not provided_by & wanted:
            missing.append(f"{module} (imported by {where}, from {sorted(provided_by)})")
    assert not missing, "imported but not declared in pyproject.toml: " + ", ".join(missing)


def test_the_check_sees_imports_of_every_kind():
    modules = imported_modules()
    assert {"celery", "starlette", "redis", "argon2", "billiard", "loguru"} <= set(modules)
    assert "tasks" in modules  # our own absolute imports are seen, and skipped above
