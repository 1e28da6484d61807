"""The built-in engine: YARA rules, no daemon. It decodes every MIME part (and the members
of small zip attachments) so a rule sees the attachment as the recipient would save it.

A zip member whose compressed data is corrupt cannot be looked at, ever: the engine says so
in an unscannable verdict (the failure policy applies, post-queue it is quarantined) rather
than fail as if the engine itself were broken."""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import lzma
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yara

from tasks.errors import ConfigError
from tasks.plugins.base import Message, Plugin, Verdict

# Bounds against archive bombs: members larger than this, or beyond this many, are not opened.
MAX_MEMBER_BYTES = 16 * 1024 * 1024
MAX_MEMBERS = 100
# What inflating a member raises when its compressed data is corrupt or cut short.
CORRUPT_MEMBER_ERRORS = (zlib.error, lzma.LZMAError, EOFError)


@dataclass
class BuiltinPlugin(Plugin):
    """Matches the rules in ``MAILSCAN_BUILTIN_RULES_DIR`` (``*.yar``) against each part."""

    name: ClassVar[str] = "builtin"
    pools: ClassVar[tuple[str, ...]] = ("av",)
    _rules: Any = field(default=None, init=False, repr=False)
    _rules_digest: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        folder = self.settings.builtin_rules_dir
        sources = {p.stem: str(p) for p in sorted(folder.glob("*.yar"))}
        if not sources:
            raise ConfigError(f"no YARA rules (*.yar) in MAILSCAN_BUILTIN_RULES_DIR={folder}")
        digest = hashlib.sha256()
        for path in sources.values():
            digest.update(Path(path).read_bytes())
        self._rules_digest = digest.hexdigest()
        try:
            self._rules = yara.compile(filepaths=sources)
        except yara.Error as err:
            raise ConfigError(f"YARA rules in {folder} do not compile: {err}") from err

    def scan(self, message: Message) -> Verdict:
        started = time.perf_counter()
        unreadable: list[str] = []
        for blob in _decoded_parts(message, unreadable):
            matches = self._rules.match(data=blob)
            if matches:
                return self.verdict("infected", started, virus=_virus_name(matches[0]))
        if unreadable:
            detail = f"not scannable: {'; '.join(unreadable)}"[:500]
            return self.verdict("error", started, detail=detail, unscannable=True)
        return self.verdict("clean", started)

    def health(self) -> str:
        return f"yara {yara.__version__}"

    def cache_identity(self) -> str | None:
        return f"builtin yara {yara.__version__} rules {self._rules_digest}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "rules_dir": str(self.settings.builtin_rules_dir)}


def _virus_name(match: Any) -> str:
    return str(match.meta.get("virus", match.rule))


def _decoded_parts(message: Message, unreadable: list[str]) -> Iterator[bytes]:
    """The message, each decoded part and each zip member; what cannot be decoded is named
    in ``unreadable``."""
    yield message
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    for part in parsed.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        yield payload
        if zipfile.is_zipfile(io.BytesIO(payload)):
            yield from _zip_members(payload, unreadable)


def _zip_members(payload: bytes, unreadable: list[str]) -> Iterator[bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            for info in archive.infolist()[:MAX_MEMBERS]:
                if info.file_size <= MAX_MEMBER_BYTES and not info.is_dir():
                    yield from _member(archive, info, unreadable)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError):
        return  # encrypted or broken archives are clamd's job; the engine says what it can


def _member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, unreadable: list[str]
) -> Iterator[bytes]:
    try:
        data = archive.read(info)
    except CORRUPT_MEMBER_ERRORS as err:
        unreadable.append(f"zip member {info.filename!r}: corrupt compressed data ({err})")
        return
    yield data
