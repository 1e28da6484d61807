"""The message bytes, stored once in Redis for both pools; jobs carry only a reference.

A reference is ``{"blob": id, "size": bytes, "digest": sha256 hex}``: no address, no subject,
nothing Flower's task list should not show.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import Any, TypedDict

from tasks.constants import BLOB_KEY
from tasks.errors import BlobMissing

# Compression pays for text (a tenth of the bytes or less, at 2-5 ms of CPU per MB) and not
# for attachments: base64 of already-compressed data (zip, PDF, images) shrinks only to about
# 0.78 at 35 ms per MB, which made zlib the largest per-MB cost of the SMTP front. So a few
# slices of the message are compressed first, and the whole only when they shrink well.
COMPRESS_FROM_BYTES = 8 * 1024
SAMPLE_SLICES, SLICE_BYTES = 4, 2048
PAYS_BELOW_RATIO = 0.6
RAW, ZLIB = b"R", b"Z"


class BlobRef(TypedDict, total=False):
    blob: str
    size: int
    digest: str
    # Digest of the message as the client sent it, before our headers: the same message sent
    # again has the same one, which lets the poison guard recognise it.
    origin: str
    # Digest of what an antivirus engine judges (the verdict cache's key, content_key).
    content: str


_HEADER_END = re.compile(rb"\r?\n\r?\n")
# The headers that change how the body is decoded: a different value must be a different key.
_DECODING_HEADERS = re.compile(
    rb"(?im)^(content-type|content-transfer-encoding|mime-version)[ \t]*:(.*(?:\r?\n[ \t].*)*)"
)


def split_head(message: bytes) -> tuple[bytes, bytes]:
    """The header block and the body (CRLF or bare LF line endings)."""
    split = _HEADER_END.search(message)
    return (message[: split.start()], message[split.end() :]) if split else (message, b"")


def content_key(message: bytes) -> str:
    """The MIME headers that decide how the body is read, and the body: what an antivirus
    engine judges. Identical attachments in a bulk mailing give one key."""
    head, body = split_head(message)
    digest = hashlib.sha256()
    for name, value in _DECODING_HEADERS.findall(head):
        digest.update(name.lower() + b":" + b" ".join(value.split()) + b"\n")
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def encode(data: bytes) -> bytes:
    if len(data) >= COMPRESS_FROM_BYTES and compresses_well(data):
        return ZLIB + zlib.compress(data, 1)
    return RAW + data


def compresses_well(data: bytes) -> bool:
    """Whether slices spread over ``data`` shrink below PAYS_BELOW_RATIO."""
    step = len(data) // SAMPLE_SLICES
    sample = b"".join(data[n * step : n * step + SLICE_BYTES] for n in range(SAMPLE_SLICES))
    return len(zlib.compress(sample, 1)) < len(sample) * PAYS_BELOW_RATIO


def decode(stored: bytes) -> bytes:
    marker, body = stored[:1], stored[1:]
    return zlib.decompress(body) if marker == ZLIB else body


def reference(blob_id: str, data: bytes, origin: str = "") -> BlobRef:
    ref = BlobRef(blob=blob_id, size=len(data), digest=hashlib.sha256(data).hexdigest())
    ref["content"] = content_key(data)
    if origin:
        ref["origin"] = origin
    return ref


def key(blob_id: str) -> str:
    return BLOB_KEY.format(blob_id=blob_id)


def put(redis: Any, blob_id: str, data: bytes, ttl_s: int, origin: str = "") -> BlobRef:
    """Store the bytes (synchronous client); return the reference the jobs carry."""
    redis.set(key(blob_id), encode(data), ex=ttl_s)
    return reference(blob_id, data, origin)


def get(redis: Any, ref: BlobRef) -> bytes:
    return unpack(ref, redis.get(key(ref["blob"])))


def unpack(ref: BlobRef, stored: bytes | None) -> bytes:
    """The message from what GET of ``key(ref["blob"])`` answered, checked against ``ref``."""
    if stored is None:
        raise BlobMissing(f"message {ref['blob']} is no longer in Redis")
    data = decode(stored)
    if hashlib.sha256(data).hexdigest() != ref["digest"]:
        raise BlobMissing(f"message {ref['blob']} does not match its digest")
    return data
