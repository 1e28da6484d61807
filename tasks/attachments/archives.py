"""Archives opened for the banned-attachment engine: zip, tar, gzip, bzip2 and xz with the
standard library, 7z with py7zr, rar with rarfile.

Every archive is seen the same way: its members, each with a name, whether it is encrypted,
and a ``read(limit)`` that gives at most ``limit`` bytes from its start (so a member is never
inflated further than the caller allows, whatever its header claims). A compressed rar
member's ``read`` gives None: rarfile needs an external, non-free tool to unpack, so such
members are judged by their names and their encryption alone; stored ones are read.

What a broken archive raises is one of ``UNREADABLE``: the caller refuses the archive, since
no engine can see inside one that cannot be opened.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import py7zr
import py7zr.exceptions
import py7zr.io
import rarfile

from tasks.errors import BannedPart

UNREADABLE = (
    zipfile.BadZipFile, tarfile.TarError, py7zr.exceptions.ArchiveError, rarfile.Error,
    zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError, RuntimeError,
    ValueError, KeyError,
)  # fmt: skip
_COMPRESSED_SUFFIXES = {"gzip": (".gz", ".tgz"), "bzip2": (".bz2", ".tbz"), "xz": (".xz", ".txz")}


@dataclass(frozen=True)
class Member:
    """One file inside an archive. ``read(limit)``: at most ``limit`` bytes of it, or None
    when its contents cannot be read here (rar)."""

    name: str
    encrypted: bool
    read: Callable[[int], bytes | None]


def members(kind: str, path: str, data: bytes, unpack_limit: int) -> Iterator[Member]:
    """The members of the archive ``data`` of ``kind`` (see ``KINDS``). ``unpack_limit``:
    the most bytes a 7z archive may unpack in all (it unpacks whole, not member by member);
    past it BannedPart names ``path``."""
    if kind == "zip":
        return _zip(data)
    if kind == "tar":
        return _tar(data)
    if kind == "7z":
        return _sevenzip(path, data, unpack_limit)
    if kind == "rar":
        return _rar(data)
    return _stream(kind, path, data)


KINDS = ("zip", "tar", "7z", "rar", "gzip", "bzip2", "xz")


def _zip(data: bytes) -> Iterator[Member]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            # Bit 0 of the flags: traditional or AES encryption alike.
            encrypted = bool(info.flag_bits & 0x1)
            yield Member(info.filename, encrypted, _zip_reader(archive, info))


def _zip_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[int], bytes]:
    def read(limit: int) -> bytes:
        with archive.open(info) as member:
            return member.read(limit)

    return read


def _tar(data: bytes) -> Iterator[Member]:
    # "r:" only: a compressed tar is a gzip (bzip2, xz) member first, inflated within bounds.
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for info in archive:
            if info.isfile():
                yield Member(info.name, False, _tar_reader(archive, info))


def _tar_reader(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Callable[[int], bytes]:
    def read(limit: int) -> bytes:
        member = archive.extractfile(info)
        return member.read(limit) if member else b""

    return read


def _stream(kind: str, path: str, data: bytes) -> Iterator[Member]:
    """A compressed single file: its one member is named after the archive less its suffix."""
    leaf = path.rsplit("/", 1)[-1]
    name = leaf
    for suffix in _COMPRESSED_SUFFIXES[kind]:
        if leaf.lower().endswith(suffix):
            name = leaf[: -len(suffix)] + (".tar" if suffix.startswith(".t") else "")

    def read(limit: int) -> bytes:
        raw = io.BytesIO(data)
        if kind == "gzip":
            with gzip.GzipFile(fileobj=raw) as stream:
                return stream.read(limit)
        if kind == "bzip2":
            with bz2.BZ2File(raw) as stream:
                return stream.read(limit)
        with lzma.LZMAFile(raw) as stream:
            return stream.read(limit)

    yield Member(name or "(unnamed)", False, read)


def _sevenzip(path: str, data: bytes, unpack_limit: int) -> Iterator[Member]:
    try:
        archive = py7zr.SevenZipFile(io.BytesIO(data), max_extract_size=unpack_limit)
    except py7zr.exceptions.PasswordRequired:
        # Encrypted names: not even the members can be listed.
        yield Member("(encrypted names)", True, lambda _: None)
        return
    with archive:
        encrypted = archive.needs_password()
        files = [info for info in archive.list() if info.is_file]
        contents = {} if encrypted else _unpack_7z(archive, path, unpack_limit)
        for info in files:
            yield Member(info.filename, encrypted, _bytes_reader(contents.get(info.filename)))


def _unpack_7z(archive: py7zr.SevenZipFile, path: str, unpack_limit: int) -> dict[str, bytes]:
    factory = py7zr.io.BytesIOFactory(unpack_limit)
    try:
        # Into memory, bounded by the factory and max_extract_size: nothing is written to disk.
        archive.extractall(factory=factory)  # noqa: S202
    except py7zr.exceptions.DecompressionBombError:
        raise BannedPart(path, f"archives unpack to more than {unpack_limit} bytes") from None
    found = {}
    for name, product in factory.products.items():
        product.seek(0)
        found[name] = product.read()
    return found


def _bytes_reader(content: bytes | None) -> Callable[[int], bytes | None]:
    return lambda limit: None if content is None else content[:limit]


def _rar(data: bytes) -> Iterator[Member]:
    try:
        archive = rarfile.RarFile(io.BytesIO(data))
    except rarfile.PasswordRequired:
        yield Member("(encrypted names)", True, lambda _: None)
        return
    if archive.needs_password() and not archive.infolist():
        yield Member("(encrypted names)", True, lambda _: None)
    for info in archive.infolist():
        if not info.is_dir():
            yield Member(info.filename, info.needs_password(), _rar_reader(archive, info))


def _rar_reader(archive: rarfile.RarFile, info: rarfile.RarInfo) -> Callable[[int], bytes | None]:
    def read(limit: int) -> bytes | None:
        if info.compress_type != rarfile.RAR_M0:
            return None  # compressed: only the non-free unrar unpacks it
        with archive.open(info) as member:
            return member.read(limit)

    return read
