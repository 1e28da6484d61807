"""The attachments of a message held against the banned-attachment rules: each part that is
a file, and every member of its archives, to a bounded depth, number of files and number of
unpacked bytes. The first part that breaks a rule other than its name's extension ends the
look (BannedPart); a part banned by its extension alone is noted and the look goes on, so the
file names seen (seen.py) are complete for a policy section that judges them with a list of
its own.

What the bytes are is asked of libmagic on their first ``HEAD_BYTES`` (unless they are
text: banned types are binary, scripts are known by their names); an archive member is
unpacked whole only when it is an archive itself, so a member claiming gigabytes (a zip
bomb) costs its head and no more. Whatever cannot be looked into (an encrypted archive, one
nested too deep, too big or broken) is refused: no engine behind us could see inside either.
"""

from __future__ import annotations

import contextlib
import email
import email.header
import email.policy
import email.utils
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message as MimePart

from tasks.attachments import archives
from tasks.attachments.names import class_id_rule, extension_rule
from tasks.attachments.seen import NamesSeen
from tasks.errors import BannedPart
from tasks.settings import Settings

# Enough for libmagic to know executables, archives and documents by their headers.
HEAD_BYTES = 16 * 1024
# Only a part with a name or a type other than text can carry a file: a message with neither
# is passed without being parsed. The possessive blank keeps "text/" from being skipped.
_ATTACHMENT_SIGNS = re.compile(
    rb"(?i)name\*?[0-9]*\*?\s*=|^content-type:\s*+(?!text/|multipart/|message/)", re.MULTILINE
)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
# Bytes no text holds (tab, line ends, form feed and the escape of ISO-2022 are text).
# Executables, installers, shortcuts and archives all have them in their first bytes; text
# is not shown to libmagic, whose text rules cost milliseconds per part.
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
TEXT_TYPE = "text/plain"
ARCHIVE_TYPES = {
    "application/zip": "zip", "application/x-zip-compressed": "zip", "application/x-tar": "tar",
    "application/x-7z-compressed": "7z", "application/x-rar": "rar", "application/vnd.rar": "rar",
    "application/gzip": "gzip", "application/x-gzip": "gzip", "application/x-bzip2": "bzip2",
    "application/x-xz": "xz",
}  # fmt: skip
# By name only when libmagic knows nothing better: a broken archive still looks like one.
ARCHIVE_EXTENSIONS = {
    "zip": "zip", "tar": "tar", "7z": "7z", "rar": "rar", "gz": "gzip", "tgz": "gzip",
    "bz2": "bzip2", "tbz": "bzip2", "xz": "xz", "txz": "xz",
}  # fmt: skip
UNKNOWN_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Rules:
    """The banned-attachment settings, as the inspection uses them."""

    extensions: frozenset[str]
    types: frozenset[str]
    ban_encrypted: bool
    max_depth: int
    max_unpacked_bytes: int
    max_members: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        return cls(
            extensions=frozenset(settings.banned_extensions),
            types=frozenset(settings.banned_types),
            ban_encrypted=settings.ban_encrypted_archives,
            max_depth=settings.banned_max_archive_depth,
            max_unpacked_bytes=settings.banned_max_unpacked_bytes,
            max_members=settings.banned_max_archive_members,
        )


class _Look:
    """One message's look: what its archives may still cost (unpacked bytes, files looked
    at) and the file names seen so far."""

    def __init__(self, rules: Rules, seen: NamesSeen) -> None:
        self.rules = rules
        self.seen = seen
        self.bytes_left = rules.max_unpacked_bytes
        self.members_left = rules.max_members

    def member(self, path: str) -> None:
        self.members_left -= 1
        if self.members_left < 0:
            raise BannedPart(path, f"archives hold more than {self.rules.max_members} files")

    def charge(self, path: str, size: int) -> None:
        self.bytes_left -= size
        if self.bytes_left < 0:
            limit = self.rules.max_unpacked_bytes
            raise BannedPart(path, f"archives unpack to more than {limit} bytes")


class Inspector:
    """``check(message)`` raises BannedPart for the first part that breaks a rule other than
    its extension, and otherwise returns the file names seen and the first part banned by
    its extension. ``type_of`` names the content type of a file's first bytes (libmagic)."""

    def __init__(self, rules: Rules, type_of: Callable[[bytes], str]) -> None:
        self.rules = rules
        self.type_of = type_of

    def check(self, message: bytes) -> NamesSeen:
        seen = NamesSeen()
        if not _ATTACHMENT_SIGNS.search(message):
            return seen
        look = _Look(self.rules, seen)
        for path, name, data in attachments(message):
            self._check_name(path, name, seen)
            kind = self._check_bytes(path, name, data[:HEAD_BYTES])
            if kind:
                self._archive(kind, path, data, 0, look)
        return seen

    def _check_name(self, path: str, name: str, seen: NamesSeen) -> None:
        rule = class_id_rule(name)
        if rule:
            raise BannedPart(path, rule)
        seen.saw(path, name)
        rule = extension_rule(name, self.rules.extensions)
        if rule:
            seen.banned(path, rule)

    def _check_bytes(self, path: str, name: str, head: bytes) -> str | None:
        """Refuse a banned type; else the kind of archive the bytes are, or None."""
        content_type = self.type_of(head) if _BINARY.search(head) else TEXT_TYPE
        if content_type in self.rules.types:
            raise BannedPart(path, f"content type {content_type}")
        if content_type in ARCHIVE_TYPES:
            return ARCHIVE_TYPES[content_type]
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        return ARCHIVE_EXTENSIONS.get(extension) if content_type == UNKNOWN_TYPE else None

    def _archive(self, kind: str, path: str, data: bytes, depth: int, look: _Look) -> None:
        if depth >= self.rules.max_depth:
            raise BannedPart(path, f"archives nested deeper than {self.rules.max_depth}")
        try:
            for member in archives.members(kind, path, data, look.bytes_left):
                self._member(member, path, depth + 1, look)
        except archives.UNREADABLE as err:
            raise BannedPart(path, f"unreadable {kind} archive") from err

    def _member(self, member: archives.Member, archive_path: str, depth: int, look: _Look) -> None:
        path = f"{archive_path}/{_clean(member.name)}"
        look.member(path)
        self._check_name(path, member.name, look.seen)
        if member.encrypted:
            if self.rules.ban_encrypted:
                raise BannedPart(archive_path, "encrypted archive")
            return
        head = member.read(HEAD_BYTES)
        if head is None:
            return  # a rar member: its name was all there was to see
        look.charge(path, len(head))
        kind = self._check_bytes(path, member.name, head)
        if not kind:
            return
        data = head
        if len(head) == HEAD_BYTES:
            data = member.read(look.bytes_left + len(head) + 1) or b""
            look.charge(path, len(data) - len(head))
        self._archive(kind, path, data, depth, look)


def attachments(message: bytes) -> Iterator[tuple[str, str, bytes]]:
    """Each part that is a file: how to name it, its file name (maybe empty), its bytes."""
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    for number, part in enumerate(parsed.walk(), 1):
        if part.is_multipart():
            continue
        name = _filename(part)
        if not name and not _is_file(part):
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            yield name or f"part {number} ({part.get_content_type()})", name, payload


def _filename(part: MimePart) -> str:
    name = part.get_filename() or part.get_param("name") or ""
    if not isinstance(name, str):
        name = email.utils.collapse_rfc2231_value(name)
    if "=?" in name:
        # Undecodable: the name as written still carries its extension.
        with contextlib.suppress(ValueError, LookupError):
            name = str(email.header.make_header(email.header.decode_header(name)))
    return _clean(name)


def _is_file(part: MimePart) -> bool:
    """A part without a name is a file when it is an attachment or no text."""
    if part.get_content_maintype() in ("text", "message"):
        return part.get_content_disposition() == "attachment"
    return True


def _clean(name: str) -> str:
    return _CONTROLS.sub("", name).strip()
