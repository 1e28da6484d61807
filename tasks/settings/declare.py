"""How a setting is declared: its default, its parser and its documentation on its field,
so the loader and docs/settings.md both read them from the one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, field
from pathlib import Path
from typing import Any

from tasks.wire.keys import POOLS

Parser = Callable[[str], Any]


def setting(
    default: Any,
    parse: Parser,
    doc: str,
    *,
    shown: str = "",
    section: str = "",
    mask: Callable[[str], str] | None = None,
) -> Any:
    """A field of ``Settings``, set by ``MAILSCAN_<NAME>``. ``shown``: the default as the docs
    say it, when its value does not say it well; ``section``: a heading that starts before
    this field in the docs; ``mask``: how a bad value is quoted in an error (secrets)."""
    meta = {"parse": parse, "doc": doc, "shown": shown, "section": section, "mask": mask}
    return field(default=default, metadata=meta)


def computed(factory: Callable[[], Any], parse: Parser, doc: str, *, shown: str) -> Any:
    """A setting whose default is worked out when the settings are built (the host's name)."""
    meta = {"parse": parse, "doc": doc, "shown": shown, "section": "", "mask": None}
    return field(default_factory=factory, metadata=meta)


def folder(leaf: str, doc: str, *, section: str = "") -> Any:
    """A path under ``MAILSCAN_VAR_DIR`` unless set on its own."""
    meta = {"parse": Path, "doc": doc, "shown": "", "section": section, "mask": None}
    return field(default=Path("var") / leaf, metadata={**meta, "under_var": leaf})


def pool_setting(parse: Parser, doc: str, *, av: Any, spam: Any, only: str = "") -> Any:
    """A field of ``PoolSettings``, set by ``MAILSCAN_<POOL>_<NAME>``, with each pool's
    default; ``only``: the one pool that has the variable (the other keeps its default)."""
    meta = {"parse": parse, "doc": doc, "defaults": {"av": av, "spam": spam}}
    return field(metadata={**meta, "pools": (only,) if only else POOLS})


def is_setting(declared: Field[Any]) -> bool:
    return "parse" in declared.metadata
