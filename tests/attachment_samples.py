"""Attachments made in the tests for the banned-attachment engine: executables, archives
(nested, encrypted, bombs, broken) and harmless documents, all built here from scratch."""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
import zlib
from email.message import EmailMessage

import py7zr

# The smallest PDF and PNG that libmagic knows for what they are.
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


def windows_executable() -> bytes:
    """A PE32 header as a linker writes one: MZ stub, PE signature, COFF and optional header."""
    image = bytearray(1024)
    image[0:2] = b"MZ"
    struct.pack_into("<I", image, 0x3C, 0x80)  # where the PE header starts
    image[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<HH", image, 0x84, 0x14C, 1)  # i386, one section
    struct.pack_into("<HH", image, 0x94, 0xE0, 0x102)  # optional header size, executable
    struct.pack_into("<H", image, 0x98, 0x10B)  # PE32
    return bytes(image)


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def nested_zips(levels: int, leaf: bytes = b"just text") -> bytes:
    data = zipped("leaf.txt", leaf)
    for level in range(1, levels):
        data = zipped(f"level{level}.zip", data)
    return data


def tar_gz(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_gz_bomb(unpacked_bytes: int) -> bytes:
    """A zip holding a .tar.gz that unpacks to ``unpacked_bytes`` of zeros (a few hundred
    kilobytes on the wire for a gigabyte unpacked)."""
    tar_head = tarfile.TarInfo("zeros.bin")
    tar_head.size = unpacked_bytes
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    parts = [compressor.compress(tar_head.tobuf())]
    chunk = bytes(1024 * 1024)
    for _ in range(unpacked_bytes // len(chunk)):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.flush())
    return zipped("backup.tar.gz", b"".join(parts))


def many_files_zip(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            archive.writestr(f"note{index}.txt", b"x")
    return buffer.getvalue()


def seven_zip(name: str, data: bytes, password: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w", password=password) as archive:
        archive.writestr(data, name)
    return buffer.getvalue()


def encrypted_zip(name: str, data: bytes, password: bytes = b"secret") -> bytes:
    """A zip with one member under traditional PKWARE encryption (what "zip -e" writes);
    the standard library reads such archives but does not write them."""
    crc = zlib.crc32(data)
    keys = _ZipCryptoKeys(password)
    # The 12-byte encryption header: random bytes, the last one checks the password.
    header = os.urandom(11) + bytes([crc >> 24])
    secret = keys.encrypt(header + data)
    name_bytes = name.encode()
    sizes = struct.pack("<III", crc, len(secret), len(data))
    local = struct.pack("<IHHHHH", 0x04034B50, 20, 0x1, 0, 0, 0) + sizes
    local += struct.pack("<HH", len(name_bytes), 0) + name_bytes
    central = struct.pack("<IHHHHHH", 0x02014B50, 20, 20, 0x1, 0, 0, 0) + sizes
    central += struct.pack("<HHHHHII", len(name_bytes), 0, 0, 0, 0, 0, 0) + name_bytes
    directory_at = len(local) + len(secret)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), directory_at, 0)
    return local + secret + central + end


class _ZipCryptoKeys:
    def __init__(self, password: bytes) -> None:
        self.keys = [0x12345678, 0x23456789, 0x34567890]
        for byte in password:
            self._update(byte)

    @staticmethod
    def _crc(value: int, byte: int) -> int:
        # One step of the CRC-32 register, without zlib's inversion before and after.
        return zlib.crc32(bytes([byte]), value ^ 0xFFFFFFFF) ^ 0xFFFFFFFF

    def _update(self, byte: int) -> None:
        k0, k1, k2 = self.keys
        k0 = self._crc(k0, byte)
        k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k2 = self._crc(k2, k1 >> 24)
        self.keys = [k0, k1, k2]

    def encrypt(self, plain: bytes) -> bytes:
        out = bytearray()
        for byte in plain:
            temp = (self.keys[2] | 2) & 0xFFFF
            out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
            self._update(byte)
        return bytes(out)


def rar5(name: str, data: bytes, encrypted: bool = False) -> bytes:
    """A RAR 5 archive holding ``data`` stored (uncompressed), laid out by its published
    format: no free tool writes rar. ``encrypted`` adds the member's encryption record (the
    data itself is left as it is: only the record is read)."""
    extra = b""
    if encrypted:
        # Encryption record: type 1, version 0 (AES-256), no flags, KDF count, salt, IV.
        record = _vint(1) + _vint(0) + _vint(0) + bytes([15]) + os.urandom(32)
        extra = _vint(len(record)) + record
    flags = 0x2 | (0x1 if extra else 0)  # a data area follows; an extra area when encrypted
    fields = _vint(2) + _vint(flags) + (_vint(len(extra)) if extra else b"") + _vint(len(data))
    # File flags: CRC32 present; unpacked size, attributes, CRC32, stored method, Windows.
    fields += _vint(0x4) + _vint(len(data)) + _vint(0x20) + struct.pack("<I", zlib.crc32(data))
    fields += _vint(0) + _vint(0) + _vint(len(name.encode())) + name.encode() + extra
    main = _rar_header(_vint(1) + _vint(0) + _vint(0))
    end = _rar_header(_vint(5) + _vint(0) + _vint(0))
    return b"Rar!\x1a\x07\x01\x00" + main + _rar_header(fields) + data + end


def _rar_header(body: bytes) -> bytes:
    size = _vint(len(body))
    return struct.pack("<I", zlib.crc32(size + body)) + size + body


def _vint(number: int) -> bytes:
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)


def with_attachment(
    name: str, data: bytes, content_type: str = "application/octet-stream", **headers: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["To"] = "Bob <bob@example.test>"
    message["Subject"] = "The file you asked for"
    for field, value in headers.items():
        message[field.replace("_", "-")] = value
    message.set_content(f"Please find {name} attached ({os.urandom(6).hex()}).")
    maintype, subtype = content_type.split("/")
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message
