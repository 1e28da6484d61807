"""Text from outside (a client, an engine) checked before it goes into a header field we
write or a reply line we send: a CR, LF or NUL there would end the field and let the text
write fields of its own (a forged ``X-Spam-Flag``, a second ``Return-Path``)."""

from __future__ import annotations

import re

# Every control character but the tab, which is blank space inside a field.
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
FIELD_MAX = 200


def has_controls(text: str) -> bool:
    return _CONTROLS.search(text) is not None


def field_text(text: str, limit: int = FIELD_MAX) -> str:
    """``text`` fit for one header field: control characters dropped, at most ``limit``
    characters."""
    return _CONTROLS.sub("", text)[:limit]
