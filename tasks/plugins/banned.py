"""The banned-attachment engine: refuses a message whose attachments, at any depth inside
archives, have a banned name or are a banned type by their bytes (tasks/attachments/).

Pure Python and libmagic, no daemon. Its verdict ``banned`` names the part and the rule;
every verdict also lists the file names seen, so the front can judge them again with a
policy section's own extension list. Mail without attachments costs one pattern search
over its bytes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import magic

from tasks.attachments.inspection import Inspector, Rules
from tasks.errors import BannedPart
from tasks.plugins.base import Message, Plugin, Verdict


@dataclass
class BannedPlugin(Plugin):
    """Holds each message against ``MAILSCAN_BANNED_*`` and ``MAILSCAN_BAN_ENCRYPTED_ARCHIVES``."""

    name: ClassVar[str] = "banned"
    pools: ClassVar[tuple[str, ...]] = ("av",)
    _inspector: Inspector = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # One libmagic handle per pool process (plugins are built after the fork).
        type_of = magic.Magic(mime=True).from_buffer
        self._inspector = Inspector(Rules.from_settings(self.settings), type_of)

    def scan(self, message: Message) -> Verdict:
        started = time.perf_counter()
        try:
            seen = self._inspector.check(bytes(message))
        except BannedPart as found:
            return self.verdict(
                "banned", started, part=found.path, rules=(found.rule,), detail=str(found)[:500]
            )
        names = {"names": tuple(seen.names), "names_cut": seen.cut}
        ban = seen.first_ban
        if ban is None:
            return self.verdict("clean", started, **names)
        detail = f"{ban.path}: {ban.rule}"[:500]
        return self.verdict("banned", started, part=ban.path, rules=(ban.rule,), detail=detail,
                            banned_by_name=True, **names)  # fmt: skip

    def health(self) -> str:
        return f"libmagic {magic.version()}"

    def describe(self) -> dict[str, Any]:
        rules = self._inspector.rules
        return {
            **super().describe(),
            "extensions": sorted(rules.extensions),
            "types": sorted(rules.types),
            "ban_encrypted_archives": rules.ban_encrypted,
            "max_archive_depth": rules.max_depth,
        }
