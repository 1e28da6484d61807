"""The spool keeps every accepted message until it has a final outcome."""

import pytest

from mailserver.front.delivery import MaildirDelivery
from mailserver.front.spool import Envelope, Spool


def test_committed_message_survives_a_new_spool_object(tmp_path):
    envelope = Envelope("a@example.test", ("b@example.test", "c@example.test"), "127.0.0.1", "h")
    entry = Spool(tmp_path).commit(envelope, b"Subject: x\r\n\r\nbody\r\n")
    reopened = Spool(tmp_path)
    assert reopened.pending() == [entry.id]
    loaded = reopened.load(entry.id)
    assert loaded.envelope == envelope
    assert loaded.content == b"Subject: x\r\n\r\nbody\r\n"


def test_an_entry_a_later_release_wrote_with_more_envelope_fields_still_loads(tmp_path):
    envelope = Envelope("a@example.test", ("b@example.test",), "127.0.0.1", "h")
    entry = Spool(tmp_path).commit(envelope, b"Subject: x\r\n\r\nbody\r\n")
    path = tmp_path / "queue" / entry.id
    header, _, content = path.read_bytes().partition(b"\n")
    path.write_bytes(header[:-1] + b', "a_field_from_later": 1}\n' + content)
    assert Spool(tmp_path).load(entry.id).envelope == envelope


def test_finish_forgets_and_leaves_nothing_behind(tmp_path):
    spool = Spool(tmp_path)
    entry = spool.commit(Envelope("a@x", ("b@x",)), b"x")
    spool.finish(entry.id)
    assert spool.pending() == []
    assert list(spool.tmp.iterdir()) == []


def test_a_staged_entry_is_listed_only_once_settled_and_a_crash_leftover_is_cleared(tmp_path):
    spool = Spool(tmp_path)
    staged = spool.stage(Envelope("a@x", ("b@x",)), b"Subject: x\r\n\r\nbody\r\n")
    assert spool.pending() == []  # no redriver may drive what nobody was told 250 for
    spool.settle(staged.id)
    assert spool.pending() == [staged.id]
    assert Spool(tmp_path).load(staged.id).content == staged.content

    left = spool.stage(Envelope("a@x", ("b@x",)), b"never settled")  # the front stopped here
    restarted = Spool(tmp_path)
    assert restarted.clear_staging() == 1
    assert list(restarted.tmp.iterdir()) == []
    assert restarted.pending() == [staged.id]
    assert left.id not in restarted.pending()


def test_pending_is_oldest_first_and_ignores_stray_files(tmp_path):
    spool = Spool(tmp_path)
    ids = [spool.commit(Envelope("a@x", ("b@x",)), b"%d" % n).id for n in range(5)]
    (spool.queue / "README").write_text("not a message")
    assert spool.pending() == sorted(ids)


def test_ids_that_try_to_leave_the_spool_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not a spool id"):
        Spool(tmp_path).load("../../etc/passwd")


def test_a_redriven_message_is_not_delivered_again_after_the_reader_filed_it(tmp_path):
    maildir = MaildirDelivery(tmp_path / "maildir")
    envelope = Envelope("a@example.test", ("b@example.test",))
    maildir.deliver("0" * 24, envelope, b"Subject: once\r\n\r\nbody\r\n", first=True)
    [new] = (tmp_path / "maildir" / "new").iterdir()
    new.rename(tmp_path / "maildir" / "cur" / f"{new.name}:2,S")  # a mail reader read it
    maildir.deliver("0" * 24, envelope, b"Subject: once\r\n\r\nbody\r\n")  # re-driven
    assert list((tmp_path / "maildir" / "new").iterdir()) == []
    assert len(list((tmp_path / "maildir" / "cur").iterdir())) == 1


def test_delivery_and_quarantine_are_durable_before_they_return(tmp_path, monkeypatch):
    # What os.fsync was called on, by path: the file and then the folder of its rename (a
    # rename is only durable once its folder is), so the spool entry may go after.
    import os

    from mailserver.front.quarantine import Quarantine

    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    envelope = Envelope("a@example.test", ("b@example.test",))
    MaildirDelivery(tmp_path / "mail").deliver("0" * 24, envelope, b"Subject: x\r\n\r\nhi\r\n")
    assert synced[-1] == str(tmp_path / "mail" / "new")
    entry = Spool(tmp_path / "spool").commit(envelope, b"Subject: x\r\n\r\nhi\r\n")
    synced.clear()
    Quarantine(tmp_path / "quarantine").put(entry, entry.content, "spam", {})
    assert synced[-1] == str(tmp_path / "quarantine")


def test_an_entry_finished_soon_is_gone_at_once_for_readers_and_from_disk_after_drain(tmp_path):
    spool = Spool(tmp_path)
    kept, done = (spool.commit(Envelope("a@x", ("b@x",)), b"%d" % n) for n in range(2))
    spool.finish_soon(done.id)
    assert spool.pending() == [kept.id]
    with pytest.raises(FileNotFoundError):
        spool.load(done.id)  # a redriver that listed it before must not drive it again
    assert spool.drain(timeout_s=5)
    assert sorted(p.name for p in spool.queue.iterdir()) == [kept.id]
    assert Spool(tmp_path).pending() == [kept.id]


def test_removals_that_arrive_during_a_folder_fsync_share_the_next_one(tmp_path, monkeypatch):
    import threading

    from mailserver.front import spool as spool_module

    first_sync_started, go_on = threading.Event(), threading.Event()
    synced: list[list[str]] = []

    def slow_fsync_dir(folder):
        synced.append(sorted(p.name for p in folder.iterdir()))
        first_sync_started.set()
        go_on.wait(5)

    spool = Spool(tmp_path)
    entries = [spool.commit(Envelope("a@x", ("b@x",)), b"%d" % n) for n in range(11)]
    monkeypatch.setattr(spool_module, "fsync_dir", slow_fsync_dir)
    spool.finish_soon(entries[0].id)
    assert first_sync_started.wait(5)
    for entry in entries[1:]:
        spool.finish_soon(entry.id)
    go_on.set()
    assert spool.drain(timeout_s=5)
    # One fsync for the first entry, one for the ten after it, each after its unlinks.
    assert synced == [sorted(entry.id for entry in entries[1:]), []]


def test_an_entry_whose_removal_failed_is_listed_again_not_lost(tmp_path, monkeypatch):
    from pathlib import Path

    spool = Spool(tmp_path)
    entry = spool.commit(Envelope("a@x", ("b@x",)), b"x")

    def failing_unlink(self, missing_ok=False):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "unlink", failing_unlink)
    spool.finish_soon(entry.id)
    assert spool.drain(timeout_s=5)
    assert spool.pending() == [entry.id]  # re-driven later, and found delivered then


def test_a_delivery_left_to_sync_is_durable_before_its_spool_entry_goes(tmp_path, monkeypatch):
    # The front replies before the Maildir's folder is fsynced; the spool entry keeps the
    # message durable until the remover has fsynced that folder.
    import os
    from pathlib import Path

    events: list[tuple[str, str]] = []
    real_fsync, real_unlink = os.fsync, Path.unlink

    def recording_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def recording_unlink(self, missing_ok=False):
        events.append(("unlink", str(self)))
        real_unlink(self, missing_ok=missing_ok)

    spool, maildir = Spool(tmp_path / "spool"), MaildirDelivery(tmp_path / "mail")
    envelope = Envelope("a@example.test", ("b@example.test",))
    entry = spool.commit(envelope, b"Subject: x\r\n\r\nhi\r\n")
    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(Path, "unlink", recording_unlink)
    unsynced = maildir.deliver(entry.id, envelope, entry.content, first=True, defer_sync=True)
    new = str(tmp_path / "mail" / "new")
    assert unsynced == tmp_path / "mail" / "new"
    assert ("fsync", new) not in events
    spool.finish_soon(entry.id, unsynced)
    assert spool.drain(timeout_s=5)
    removed = ("unlink", str(spool.queue / entry.id))
    assert events.index(("fsync", new)) < events.index(removed)
    assert events[-1] == ("fsync", str(spool.queue))
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 1


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: x\r\n\r\n" + b"a line of text\r\n" * 500,
        b"Subject: x\r\n\r\n" + b"x" * 3000 + b"\r\n" + b"y" * 2000,  # lines longer than a piece
        b"A\r" * 700 + b"\r\n" * 300,  # CRs that are not line ends stay, whatever the cut
        b"Subject: x\n\nalready LF\n" * 100,
        b"ends in a CR\r",
        b"",
    ],
)
@pytest.mark.parametrize("piece_bytes", [2, 7, 64, 1024 * 1024])
def test_the_maildir_copy_is_converted_in_pieces_as_in_one(message, piece_bytes):
    from mailserver.front.delivery import lf_pieces

    pieces = list(lf_pieces(message, piece_bytes))
    assert b"".join(pieces) == message.replace(b"\r\n", b"\n")
    assert all(len(p) <= piece_bytes for p in pieces)


def test_a_big_message_reaches_the_maildir_as_sent_with_our_lines_on_top_and_lf_ends(tmp_path):
    envelope = Envelope("alice@example.test", ("bob@example.test",), "127.0.0.1", "client.test")
    message = b"Subject: big\r\n\r\n" + b"0123456789abcdef\r\n" * 200_000  # 3.6 MB
    top = b"X-Virus-Status: Clean\r\nReceived: by mailscan\r\n"
    MaildirDelivery(tmp_path).deliver("1" * 24, envelope, message, top=top)
    [delivered] = (tmp_path / "new").iterdir()
    expected = b"Return-Path: <alice@example.test>\n" + (top + message).replace(b"\r\n", b"\n")
    assert delivered.read_bytes() == expected
