"""Message bytes stored once; jobs carry a reference with no address in it."""

import base64
import hashlib
import random
import zlib

import pytest

from tasks.errors import BlobMissing
from tasks.wire import blobs


class DictRedis:
    """The two calls blobs makes, on a dict: enough to test our own encoding logic."""

    def __init__(self):
        self.data = {}

    def eval(self, script, numkeys, key, value, ttl_s):
        assert "set_repl(redis.REPL_NONE)" in script  # what tests/test_pipeline.py runs for real
        self.data[key] = value

    def get(self, key):
        return self.data.get(key)


def test_round_trip_small_and_large_and_compression_pays():
    redis = DictRedis()
    small = b"Subject: hi\r\n\r\nhello\r\n"
    large = b"Subject: report\r\n\r\n" + b"the same line of text again\r\n" * 5000
    for blob_id, data in (("s", small), ("l", large)):
        ref = blobs.put(redis, blob_id, data, ttl_s=60)
        assert blobs.get(redis, ref) == data
    assert len(redis.data[blobs.key("l")]) < len(large) / 10


def test_reference_carries_no_address():
    ref = blobs.put(DictRedis(), "id1", b"From: alice@example.test\r\n\r\nx", ttl_s=60)
    assert set(ref) == {"blob", "size", "digest", "content", "packing"}  # digests only
    assert "@" not in repr(ref)


def test_a_blob_stored_before_the_packing_was_in_the_reference_still_reads():
    message = b"Subject: report\r\n\r\n" + b"the same line of text again\r\n" * 5000
    for marker, stored in ((b"R", message), (b"Z", zlib.compress(message))):
        redis = DictRedis()
        # What the front wrote before: no packing, and SHA-256 of the message as the digest.
        ref = {"blob": "old", "size": len(message), "digest": hashlib.sha256(message).hexdigest()}
        redis.data[blobs.key("old")] = marker + stored
        assert blobs.get(redis, ref) == message


def test_expired_or_tampered_blob_is_reported():
    redis = DictRedis()
    ref = blobs.put(redis, "id1", b"original", ttl_s=60)
    redis.data[blobs.key("id1")] = blobs.pack(b"changed")[0]
    with pytest.raises(BlobMissing, match="digest"):
        blobs.get(redis, ref)
    with pytest.raises(BlobMissing, match="no longer"):
        blobs.get(DictRedis(), ref)


@pytest.mark.parametrize(
    "changed",
    [
        b"Subject: other\r\nX-Id: 1\r\n\r\nbody\r\n",  # a header only
        b"Subject: hi\r\nX-Id: 1\r\n\r\nbody!\r\n",  # the body only
        b"Subject: hi\r\nX-Id: 1\r\n\r\n",  # no body
    ],
)
def test_a_change_anywhere_in_a_message_is_caught_by_its_digest(changed):
    redis = DictRedis()
    ref = blobs.put(redis, "id1", b"Subject: hi\r\nX-Id: 1\r\n\r\nbody\r\n", ttl_s=60)
    redis.data[blobs.key("id1")] = blobs.pack(changed)[0]
    with pytest.raises(BlobMissing, match="digest"):
        blobs.get(redis, ref)


def test_our_headers_in_front_keep_the_content_key_the_front_computes_once():
    original = b"Subject: hi\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    scan_copy = b"Return-Path: <a@example.test>\r\nReceived: from x\r\n" + original
    content = blobs.content_key(original)
    assert blobs.content_key(scan_copy) == content
    ref = blobs.reference("id1", scan_copy, content=content)
    assert ref == blobs.reference("id1", scan_copy)  # as if computed on the copy itself
    assert blobs.whole_digest(original, content) != ref["digest"]


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: hi\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
        b"Subject: hi\n\nbody with LF line ends\n",
        b"\r\nno header at all, the blank line first\r\n",
        b"\nthe same with LF\n",
        b"Subject: only a header, no blank line\r\n",
        b"Subject: hi\r\n\n\r\nmixed line ends at the blank line\r\n",
        b"",
    ],
)
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_a_reference_to_our_lines_and_the_message_apart_is_that_of_the_two_joined(message, eol):
    # A spooled message is referenced without the 25 MB copy that joins it to our lines;
    # the pool checks the joined bytes against it.
    top = b"Return-Path: <a@example.test>" + eol + b"Received: from x" + eol
    content = blobs.content_key(message)
    apart = blobs.reference("id1", message, "origin", content, top=top)
    assert apart == blobs.reference("id1", top + message, "origin")
    assert apart["size"] == len(top) + len(message)


def test_attachments_of_compressed_data_are_stored_without_compression():
    # base64 of random bytes, as a zip or a PDF attachment is: zlib would save a fifth of the
    # bytes at many times the CPU of text.
    redis = DictRedis()
    attachment = base64.encodebytes(random.Random(6).randbytes(300_000))
    message = b"Subject: report\r\n\r\nsee the attachment\r\n\r\n" + attachment
    ref = blobs.put(redis, "a", message, ttl_s=60)
    assert redis.data[blobs.key("a")] is message  # stored as it is, not even copied
    assert ref["packing"] == "raw"
    assert blobs.get(redis, ref) == message
