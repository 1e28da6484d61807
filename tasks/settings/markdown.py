"""docs/settings.md, rendered from the settings' fields: every variable with its default and
what it means. A test compares the committed file with this rendering."""

from __future__ import annotations

import dataclasses
from dataclasses import Field
from typing import Any

from tasks.settings.schema import Settings
from tasks.settings.variables import env_name, pool_fields

INTRO = """\
# Settings

<!-- Rendered from tasks/settings/ by `python -m tasks.settings --markdown`: edit the
definitions there, then write this file again with
`python -m tasks.settings --markdown > docs/settings.md`. -->

All settings are environment variables, read once at start and validated; a bad or unknown
`MAILSCAN_*` variable stops start-up with a message naming it. `mailscan check-config`
validates them and exits. The folders under `var/` follow `MAILSCAN_VAR_DIR` unless they are
set on their own.
"""
POOLS_INTRO = """\
## Each pool

The av pool and the spam pool each have these, `MAILSCAN_AV_*` and `MAILSCAN_SPAM_*`; the
defaults are given in that order.
"""
TABLE_HEAD = "| variable | default | meaning |\n|---|---|---|"


def render() -> str:
    """The whole of docs/settings.md."""
    parts = [INTRO.rstrip("\n")]
    for declared in dataclasses.fields(Settings):
        if declared.name == "pools":
            parts.append(f"\n{POOLS_INTRO}\n{TABLE_HEAD}")
            parts.extend(_pool_row(pool_field) for pool_field in pool_fields())
            continue
        if declared.metadata["section"]:
            parts.append(f"\n## {declared.metadata['section']}\n\n{TABLE_HEAD}")
        parts.append(_row([env_name(declared.name)], [_default(declared)], declared))
    return "\n".join(parts) + "\n"


def _pool_row(declared: Field[Any]) -> str:
    pools = declared.metadata["pools"]
    names = [env_name(f"{pool}_{declared.name}") for pool in pools]
    return _row(names, [shown(declared.metadata["defaults"][pool]) for pool in pools], declared)


def _row(names: list[str], defaults: list[str], declared: Field[Any]) -> str:
    cells = [
        ", ".join(f"`{name}`" for name in names),
        ", ".join(defaults),
        declared.metadata["doc"],
    ]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _default(declared: Field[Any]) -> str:
    return declared.metadata["shown"] or shown(declared.default)


def shown(value: Any) -> str:
    """A default as the docs say it."""
    if value is None or value in ("", ()):
        return "unset"
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, frozenset):
        text = ",".join(str(item) for item in sorted(value))
    elif isinstance(value, tuple):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    return f"`{text}`"
