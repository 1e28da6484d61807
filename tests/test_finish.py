"""A message is delivered before its spool entry goes, and the entry goes after the reply:
a crash in between must neither lose the message nor deliver it twice."""

from __future__ import annotations

import threading
from pathlib import Path

from mailserver.front import spool as spool_module
from mailserver.front.delivery import MaildirDelivery
from mailserver.front.pipeline import Pipeline
from mailserver.front.policy import Decision
from mailserver.front.quarantine import Quarantine
from mailserver.front.spool import Envelope, Spool
from tasks.settings import load_settings

CLEAN = Decision("deliver", "250 2.0.0 Ok", "clean", ["X-Virus-Status: Clean"])


def _pipeline(root: Path) -> Pipeline:
    settings = load_settings({"MAILSCAN_VAR_DIR": str(root / "var")})
    maildir = MaildirDelivery(root / "maildir")
    spool = Spool(root / "spool")
    # No broker and no scan: only the acting half of the pipeline runs here.
    return Pipeline(settings, None, spool, None, None, maildir, Quarantine(root / "q"))


def test_a_delivered_message_whose_removal_was_lost_in_a_crash_is_delivered_once(
    tmp_path, monkeypatch
):
    first = _pipeline(tmp_path)
    entry = first.spool.commit(
        Envelope("a@example.test", ("b@example.test",)), b"Subject: x\r\n\r\nhi\r\n"
    )
    never = threading.Event()
    real_fsync_dir = spool_module.fsync_dir
    # The front "crashes" after its reply: its remover never gets past the Maildir's fsync.
    monkeypatch.setattr(spool_module, "fsync_dir", lambda folder: never.wait())
    try:
        outcome = first._act(entry, CLEAN, {"av": None, "spam": None}, client_waiting=True)
        assert outcome.action == "deliver"
        assert not first.spool.drain(timeout_s=0.2)  # the removal is stuck
        monkeypatch.setattr(spool_module, "fsync_dir", real_fsync_dir)

        restarted = _pipeline(tmp_path)  # the next start: the entry is still in the spool
        assert restarted.spool.pending() == [entry.id]
        again = restarted.spool.load(entry.id)
        restarted._act(again, CLEAN, {"av": None, "spam": None}, client_waiting=False)
        assert restarted.spool.drain(timeout_s=5)
    finally:
        never.set()
    assert restarted.spool.pending() == []
    delivered = list((tmp_path / "maildir" / "new").iterdir())
    assert len(delivered) == 1
    assert b"hi" in delivered[0].read_bytes()
