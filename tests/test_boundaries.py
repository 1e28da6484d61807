"""The import boundaries of the house (README, "Where things live"): the front, the console
and the command line see the pools only through the contract (``tasks.wire``), the settings
and the error tree; the contract imports nothing of mailscan above it; no module imports
itself back through others."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("tasks", "mailserver", "beat")
# The pool side: what a front, console or command line must never reach into.
POOL_INTERNALS = ("tasks.guards", "tasks.plugins", "tasks.runner", "tasks.scan",
                  "tasks.isolation", "tasks.health", "tasks.procfiles", "beat")  # fmt: skip
OUTSIDE_THE_POOLS = ("mailserver.front", "mailserver.console", "mailserver.cli")
CONTRACT_MAY_IMPORT = ("tasks.wire", "tasks.errors")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imports_of(path: Path, top_level_only: bool = False) -> Iterator[str]:
    """First-party modules ``path`` imports: anywhere in it, or at its top level only (what
    runs when it is imported, and so what can form a cycle)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] in PACKAGES)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(importer: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{name} imports {target}"
        for name, path in modules().items()
        if _within(name, importer)
        for target in imports_of(path)
        if _within(target, forbidden)
    )


def test_front_console_and_command_line_never_reach_into_the_pools():
    assert violations(OUTSIDE_THE_POOLS, POOL_INTERNALS) == []


def test_the_contract_imports_nothing_above_it():
    known = modules()
    found = sorted(
        f"{name} imports {target}"
        for name, path in known.items()
        if _within(name, ("tasks.wire",))
        for target in imports_of(path)
        if target in known and not _within(target, CONTRACT_MAY_IMPORT)
    )
    assert found == []


def test_no_module_imports_itself_back_through_others():
    known = modules()
    graph = {
        name: {t for t in imports_of(path, top_level_only=True) if t in known and t != name}
        for name, path in known.items()
    }
    assert cycles(graph) == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``, one path per cycle found (depth first)."""
    found, done, path = [], set(), []

    def visit(node: str) -> None:
        if node in path:
            found.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        path.append(node)
        for target in sorted(graph[node]):
            visit(target)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tasks.guards.breaker import x", ["tasks.guards.breaker", "tasks.guards.breaker.x"]),
        ("import tasks.runner", ["tasks.runner"]),
        ("def f():\n    from tasks.plugins import load\n", ["tasks.plugins", "tasks.plugins.load"]),
        ("import os\nfrom redis import Redis", []),
    ],
)
def test_the_walk_sees_every_first_party_import(tmp_path: Path, source: str, expected: list[str]):
    module = tmp_path / "m.py"
    module.write_text(source)
    assert list(imports_of(module)) == expected


def test_the_walk_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b", "a"]]
