"""The spool keeps every accepted message until it has a final outcome."""

import pytest

from mailserver.delivery import MaildirDelivery
from mailserver.spool import Envelope, Spool


def test_committed_message_survives_a_new_spool_object(tmp_path):
    envelope = Envelope("a@example.test", ("b@example.test", "c@example.test"), "127.0.0.1", "h")
    entry = Spool(tmp_path).commit(envelope, b"Subject: x\r\n\r\nbody\r\n")
    reopened = Spool(tmp_path)
    assert reopened.pending() == [entry.id]
    loaded = reopened.load(entry.id)
    assert loaded.envelope == envelope
    assert loaded.content == b"Subject: x\r\n\r\nbody\r\n"


def test_finish_forgets_and_leaves_nothing_behind(tmp_path):
    spool = Spool(tmp_path)
    entry = spool.commit(Envelope("a@x", ("b@x",)), b"x")
    spool.finish(entry.id)
    assert spool.pending() == []
    assert list(spool.tmp.iterdir()) == []


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

    from mailserver.quarantine import Quarantine

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
