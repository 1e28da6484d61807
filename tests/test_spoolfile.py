"""Big messages reach the pools as their spool file: the read side, against the front's spool."""

import tracemalloc

import pytest

from mailserver.front import headers
from mailserver.front.spool import Envelope, Spool
from tasks.errors import BlobMissing, SpoolUnreadable
from tasks.wire import blobs
from tasks.wire.spoolfile import read_message

MESSAGE = b"Subject: big\r\n\r\n" + b"a line of a big message\r\n" * 1000
ENVELOPE = Envelope("alice@example.test", ("bob@example.test",), "127.0.0.1", "client.test")


def test_a_message_is_read_while_staged_settled_and_not_after_its_outcome(tmp_path):
    spool = Spool(tmp_path)
    entry = spool.stage(ENVELOPE, MESSAGE)
    assert read_message(tmp_path, entry.id) == MESSAGE  # the scans start before the settle
    spool.settle(entry.id)
    assert read_message(tmp_path, entry.id) == MESSAGE
    spool.finish(entry.id)
    with pytest.raises(SpoolUnreadable, match="no longer, in the spool"):
        read_message(tmp_path, entry.id)


def test_a_pool_without_the_fronts_spool_is_told_which_setting_to_change(tmp_path):
    with pytest.raises(SpoolUnreadable, match="MAILSCAN_SHARED_SPOOL_FROM_BYTES=0"):
        read_message(tmp_path / "not-shared", "0" * 24)


def test_a_pool_with_a_spool_of_its_own_is_told_too(tmp_path):
    Spool(tmp_path / "its-own")  # the folders are there, the front's entries are not
    with pytest.raises(SpoolUnreadable, match="share its folder with them"):
        read_message(tmp_path / "its-own", "0" * 24)


def test_an_entry_this_process_cannot_open_is_unreadable_not_an_error_of_the_job(tmp_path):
    Spool(tmp_path)
    (tmp_path / "tmp" / ("0" * 24)).mkdir()  # opening it fails as a file of another user would
    with pytest.raises(SpoolUnreadable, match="Is a directory"):
        read_message(tmp_path, "0" * 24)


def test_only_spool_ids_are_read(tmp_path):
    Spool(tmp_path)
    (tmp_path / "secret").write_bytes(b"x")
    for name in ("../secret", "queue/../../secret", "A" * 24):
        with pytest.raises(BlobMissing, match="not a spool entry id"):
            read_message(tmp_path, name)


class HeadOnlyRedis:
    def __init__(self, stored: bytes):
        self.stored = stored

    def get(self, key):
        return self.stored


def scan_copy_and_reference(tmp_path):
    """What the front enqueues for a big message: the whole scan copy's reference, our
    header lines alone in Redis."""
    entry = Spool(tmp_path).commit(ENVELOPE, MESSAGE)
    scan_copy = headers.prepend(entry.content, [headers.return_path(entry)])
    head = scan_copy[: len(scan_copy) - len(entry.content)]
    ref = blobs.reference(entry.id, scan_copy)
    ref["spool"] = entry.id
    return entry, scan_copy, head, ref


def test_the_scan_copy_is_our_header_lines_from_redis_then_the_spooled_message(tmp_path):
    _, scan_copy, head, ref = scan_copy_and_reference(tmp_path)
    assert len(head) < 100
    assert blobs.get(HeadOnlyRedis(head), ref, tmp_path) == scan_copy


def test_a_spool_file_that_is_not_the_referenced_message_is_refused(tmp_path):
    entry, _, head, ref = scan_copy_and_reference(tmp_path)
    path = tmp_path / "queue" / entry.id
    path.write_bytes(path.read_bytes().replace(b"a line", b"A line", 1))
    with pytest.raises(BlobMissing, match="does not match its digest"):
        blobs.get(HeadOnlyRedis(head), ref, tmp_path)


@pytest.mark.parametrize("change", [b"", b"appended after the reference\r\n"])
def test_a_spool_file_cut_short_or_grown_is_refused(tmp_path, change):
    entry, _, head, ref = scan_copy_and_reference(tmp_path)
    path = tmp_path / "queue" / entry.id
    whole = path.read_bytes()
    path.write_bytes(whole + change if change else whole[:-100])
    with pytest.raises(BlobMissing, match="does not match its digest"):
        blobs.get(HeadOnlyRedis(head), ref, tmp_path)


def test_a_big_message_is_in_a_pools_memory_once(tmp_path):
    big = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * (20 * 1024 * 1024 // 78)
    entry = Spool(tmp_path).commit(ENVELOPE, big)
    head = headers.block_for(big, [headers.return_path(entry)])
    ref = blobs.reference(entry.id, big, top=head)
    ref["spool"] = entry.id
    tracemalloc.start()
    try:
        message = blobs.get(HeadOnlyRedis(head), ref, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message == head + big
    # Read alone and then joined to our header lines, it would be there twice: 40 MiB.
    assert peak < len(big) * 1.2, f"peak {peak / 2**20:.1f} MiB for a 20 MiB message"
