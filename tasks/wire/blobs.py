"""The message bytes, stored once in Redis for both pools; jobs carry only a reference.

A reference is ``{"blob": id, "size": bytes, "digest": sha256 hex, "content": sha256 hex}``
(``whole_digest``, ``content_key``): no address, no subject, nothing Flower's task list
should not show. A big message's reference also names its spool entry (``spool``): then only
the header lines the SMTP front adds are in Redis, and the message itself is read from the
spool (tasks/wire/spoolfile.py).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from pathlib import Path
from typing import Any, TypedDict

from tasks.errors import BlobMissing
from tasks.wire.keys import BLOB_KEY
from tasks.wire.spoolfile import read_message

# Compression pays for text (a tenth of the bytes or less, quickly) and not for attachments:
# base64 of already-compressed data (zip, PDF, images) shrinks little and slowly, which made
# zlib the largest per-MB cost of the SMTP front. So a few slices of the message are
# compressed first, and the whole only when they shrink well.
COMPRESS_FROM_BYTES = 8 * 1024
SAMPLE_SLICES, SLICE_BYTES = 4, 2048
PAYS_BELOW_RATIO = 0.6
RAW, ZLIB = "raw", "zlib"

# A message as the pools get it: a big one read from the spool is one bytearray, filled in
# place behind the front's header lines (tasks/wire/spoolfile.py). Plugins only read it.
Message = bytes | bytearray


class BlobRef(TypedDict, total=False):
    blob: str
    size: int
    digest: str
    # Digest of the message as the client sent it, before our headers: the same message sent
    # again has the same one, which lets the poison guard recognise it.
    origin: str
    # Digest of what an antivirus engine judges (the verdict cache's key, content_key).
    content: str
    packing: str  # how the stored bytes are packed: raw or zlib
    # The spool entry whose message follows the stored bytes (the front's header lines).
    spool: str
    # Some recipient's policy may let a banned attachment through (a section with banned
    # off, a bypass or its own extension list): the spam verdict is then still needed.
    ban_may_pass: bool


# The blank line after the header block; at the very start, a line end alone is one.
_HEADER_END = re.compile(rb"\A\r?\n|\r?\n\r?\n")
# The headers that change how the body is decoded: a different value must be a different key.
_DECODING_HEADERS = re.compile(
    rb"(?im)^(content-type|content-transfer-encoding|mime-version)[ \t]*:(.*(?:\r?\n[ \t].*)*)"
)


def head_end(message: bytes) -> tuple[int, int]:
    """Where the header block ends and where the body starts (CRLF or bare LF line
    endings); a message without a blank line is all header, one that starts with a blank
    line has none. The front's header lines on top must not move the body's start: that is
    what keeps a message's content key and digest the same in the front and the pools."""
    split = _HEADER_END.search(message)
    return (split.start(), split.end()) if split else (len(message), len(message))


def head_of(message: bytes, top: bytes = b"") -> bytes:
    """The header block of ``top + message``, without a copy of ``message``: its first blank
    line is within ``top``'s end and ``message``'s own header block (``top`` is whole
    header lines), so only that much of it is joined."""
    if not top:
        return message[: head_end(message)[0]]
    joined = top + message[: head_end(message)[1]]
    return joined[: head_end(joined)[0]]


def content_key(message: bytes) -> str:
    """The MIME headers that decide how the body is read, and the body: what an antivirus
    engine judges. Identical attachments in a bulk mailing give one key."""
    end, body_start = head_end(message)
    digest = hashlib.sha256()
    for name, value in _DECODING_HEADERS.findall(message, 0, end):
        digest.update(name.lower() + b":" + b" ".join(value.split()) + b"\n")
    digest.update(b"\n")
    digest.update(memoryview(message)[body_start:])  # a view: a body can be 25 MB
    return digest.hexdigest()


def whole_digest(message: bytes, content: str, top: bytes = b"") -> str:
    """A digest of the whole message (``top + message``), from its header block and its
    ``content_key``: the body, nearly all of a large message, is hashed once for both
    (the front needs three digests of a message, and hashing is its largest per-byte cost)."""
    return hashlib.sha256(head_of(message, top) + b"\0" + content.encode()).hexdigest()


def pack(data: bytes) -> tuple[bytes, str]:
    """What to store, and how it is packed (``raw``: the bytes themselves, no copy)."""
    if len(data) >= COMPRESS_FROM_BYTES and compresses_well(data):
        return zlib.compress(data, 1), ZLIB
    return data, RAW


def compresses_well(data: bytes) -> bool:
    """Whether slices spread over ``data`` shrink below PAYS_BELOW_RATIO."""
    step = len(data) // SAMPLE_SLICES
    sample = b"".join(data[n * step : n * step + SLICE_BYTES] for n in range(SAMPLE_SLICES))
    return len(zlib.compress(sample, 1)) < len(sample) * PAYS_BELOW_RATIO


def _unpacked(ref: BlobRef, stored: Message) -> tuple[Message, bool]:
    """The message, and whether it matches the reference's digest."""
    if "packing" not in ref:
        # A job enqueued before the packing and the whole-message digest were in the
        # reference (across an upgrade): a marker byte, and SHA-256 of the message itself.
        marker, body = stored[:1], stored[1:]
        data = zlib.decompress(body) if marker == b"Z" else body
        return data, hashlib.sha256(data).hexdigest() == ref["digest"]
    data = zlib.decompress(stored) if ref["packing"] == ZLIB else stored
    return data, whole_digest(data, content_key(data)) == ref["digest"]


def reference(
    blob_id: str,
    data: bytes,
    origin: str = "",
    content: str = "",
    packing: str = RAW,
    top: bytes = b"",
) -> BlobRef:
    """The reference to ``top + data``, with ``top`` header lines in front (not joined:
    ``data`` can be 25 MB). ``content``: ``content_key(data)`` when the caller has it
    already; our header lines in front of a message do not change it."""
    content = content or content_key(data)
    digest = whole_digest(data, content, top)
    ref = BlobRef(blob=blob_id, size=len(top) + len(data), digest=digest)
    ref["content"], ref["packing"] = content, packing
    if origin:
        ref["origin"] = origin
    return ref


def key(blob_id: str) -> str:
    return BLOB_KEY.format(blob_id=blob_id)


# The message is SET by a script that tells Redis not to propagate it (set_repl): it goes
# neither to the append-only file nor to a replica. The spool on the SMTP front holds every
# message until its outcome, so after a Redis restart a job whose bytes are gone fails
# (BlobMissing) and the message is answered 451 or driven again from the spool. Message
# bodies then never reach Redis's disk, and a big message costs Redis no AOF write or fsync.
_SET_UNLOGGED = (
    "redis.set_repl(redis.REPL_NONE) return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])"
)


def store(redis: Any, blob_id: str, stored: bytes, ttl_s: int) -> None:
    """SET what ``pack`` made under the blob's key, outside Redis's persistence (a client or
    a pipeline)."""
    redis.eval(_SET_UNLOGGED, 1, key(blob_id), stored, ttl_s)


def put(redis: Any, blob_id: str, data: bytes, ttl_s: int, origin: str = "") -> BlobRef:
    """Store the bytes (synchronous client); return the reference the jobs carry."""
    stored, packing = pack(data)
    store(redis, blob_id, stored, ttl_s)
    return reference(blob_id, data, origin, packing=packing)


def get(redis: Any, ref: BlobRef, spool_dir: Path | None = None) -> Message:
    return unpack(ref, redis.get(key(ref["blob"])), spool_dir)


def unpack(ref: BlobRef, stored: bytes | None, spool_dir: Path | None = None) -> Message:
    """The message from what GET of ``key(ref["blob"])`` answered, and for a reference to a
    spool entry the message read from the spool under ``spool_dir``; checked against ``ref``."""
    if stored is None:
        raise BlobMissing(f"message {ref['blob']} is no longer in Redis")
    if "spool" in ref:
        if spool_dir is None:
            raise BlobMissing(f"message {ref['blob']} is in a spool, and no spool folder given")
        stored = read_message(spool_dir, ref["spool"], top=stored)
    data, intact = _unpacked(ref, stored)
    if not intact:
        raise BlobMissing(f"message {ref['blob']} does not match its digest")
    return data
