"""What the banned-attachment engine saw of a message's file names, for its verdict.

The pools do not know the recipients, so they judge with the global list of extensions; the
front judges the names again with a policy section's own list. A name's fate under any list
rests on its extension alone (names.py), so the first name of each extension is all the
front needs, and the verdict stays small: bounded in names and in characters, and saying
when it was cut."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.attachments.names import EXTENSION, extension_of

MAX_NAMES = 200
MAX_CHARS = 8 * 1024
# A path longer than this is kept by its tail: the extensions are there.
MAX_NAME_CHARS = 256


@dataclass
class NameBan:
    """The first part the global list bans by its name."""

    path: str
    rule: str


@dataclass
class NamesSeen:
    names: list[str] = field(default_factory=list)
    cut: bool = False
    first_ban: NameBan | None = None
    _extensions: set[str] = field(default_factory=set)
    _chars: int = 0

    def saw(self, path: str, name: str) -> None:
        """Keep ``path`` (of the file ``name``) when it is the first with its extension. An
        extension no list may hold (too long, odd characters) is never banned: not kept."""
        extension = extension_of(name)
        if extension in self._extensions or not EXTENSION.fullmatch(extension):
            return
        kept = path if len(path) <= MAX_NAME_CHARS else "..." + path[-MAX_NAME_CHARS:]
        if len(self.names) >= MAX_NAMES or self._chars + len(kept) > MAX_CHARS:
            self.cut = True
            return
        self._extensions.add(extension)
        self.names.append(kept)
        self._chars += len(kept)

    def banned(self, path: str, rule: str) -> None:
        if self.first_ban is None:
            self.first_ban = NameBan(path, rule)
