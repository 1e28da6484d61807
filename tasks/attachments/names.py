"""The file name rules of the banned-attachment engine: a banned extension, the same hidden
behind another (``invoice.pdf.exe``), and a Windows class id used as an extension."""

from __future__ import annotations

import re

# Explorer runs "x.{3050f4d8-98b5-11cf-bb82-00aa00bdce0b}" by its class id, hiding the real
# handler; no document is named so.
_CLASS_ID = re.compile(r"\.\s*\{[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\}", re.IGNORECASE)
# What a reader takes for the real extension in front of a banned one: letters and digits.
_DOCUMENT_EXTENSION = re.compile(r"[a-z0-9]{1,5}")


def name_rule(name: str, banned: frozenset[str]) -> str | None:
    """The rule the file name ``name`` (a path inside an archive too) breaks, or None."""
    if _CLASS_ID.search(name):
        return "Windows class id name"
    leaf = re.split(r"[/\\]", name)[-1]
    # Windows drops trailing dots and blanks: "evil.exe. " runs as evil.exe.
    pieces = [piece.strip() for piece in leaf.rstrip(". \t").lower().split(".")]
    if len(pieces) < 2 or pieces[-1] not in banned:
        return None
    hidden_behind = pieces[-2] if len(pieces) > 2 else ""
    if _DOCUMENT_EXTENSION.fullmatch(hidden_behind):
        return f"double extension .{hidden_behind}.{pieces[-1]}"
    return f"extension .{pieces[-1]}"
