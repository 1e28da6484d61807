"""The file name rules of the banned-attachment engine: a banned extension, the same hidden
behind another (``invoice.pdf.exe``), and a Windows class id used as an extension.

The class id rule holds whatever the list of extensions; the extension rules depend on the
list, which a policy section may extend or replace (the front judges names again with it)."""

from __future__ import annotations

import re

# What a list of banned extensions may hold (the setting and a policy section alike).
EXTENSION = re.compile(r"[a-z0-9_$~#!-]{1,32}")
# Explorer runs "x.{3050f4d8-98b5-11cf-bb82-00aa00bdce0b}" by its class id, hiding the real
# handler; no document is named so.
_CLASS_ID = re.compile(r"\.\s*\{[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\}", re.IGNORECASE)
# What a reader takes for the real extension in front of a banned one: letters and digits.
_DOCUMENT_EXTENSION = re.compile(r"[a-z0-9]{1,5}")


def name_rule(name: str, banned: frozenset[str]) -> str | None:
    """The rule the file name ``name`` (a path inside an archive too) breaks, or None."""
    return class_id_rule(name) or extension_rule(name, banned)


def class_id_rule(name: str) -> str | None:
    return "Windows class id name" if _CLASS_ID.search(name) else None


def extension_rule(name: str, banned: frozenset[str]) -> str | None:
    """The rule ``name`` breaks by its extension in ``banned``, or None."""
    pieces = _pieces(name)
    if len(pieces) < 2 or pieces[-1] not in banned:
        return None
    hidden_behind = pieces[-2] if len(pieces) > 2 else ""
    if _DOCUMENT_EXTENSION.fullmatch(hidden_behind):
        return f"double extension .{hidden_behind}.{pieces[-1]}"
    return f"extension .{pieces[-1]}"


def extension_of(name: str) -> str:
    """The extension the rules see in ``name``, lower case; "" when it has none."""
    pieces = _pieces(name)
    return pieces[-1] if len(pieces) > 1 else ""


def _pieces(name: str) -> list[str]:
    leaf = re.split(r"[/\\]", name)[-1]
    # Windows drops trailing dots and blanks: "evil.exe. " runs as evil.exe.
    return [piece.strip() for piece in leaf.rstrip(". \t").lower().split(".")]
