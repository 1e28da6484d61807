"""Restart safety: what was spooled is finished after a crash of the SMTP front, once."""

import os
import signal
import smtplib
import threading

import pytest

from tests.conftest import find_delivered, make_message, send, wait_for

pytestmark = pytest.mark.integration


def test_spooled_message_is_delivered_once_after_the_front_is_killed(stack, settings):
    queue = settings.spool_dir / "queue"
    spam_pool = stack.pid("spam-worker")
    # Hold the spam pool so the message is spooled but cannot finish before the kill.
    os.killpg(spam_pool, signal.SIGSTOP)
    outcome: list[object] = []

    def sender() -> None:
        try:
            outcome.append(send(make_message(X_Test_Id="crash-1"), settings.smtp_port))
        except (smtplib.SMTPException, OSError) as err:
            outcome.append(err)

    client = threading.Thread(target=sender)
    try:
        client.start()
        wait_for(lambda: any(queue.iterdir()), 20, "the message in the spool")
        os.kill(stack.pid("mailserver"), signal.SIGKILL)
        client.join(10)
    finally:
        os.killpg(spam_pool, signal.SIGCONT)
    # The sender never got a 250: its connection died with the front.
    assert not any(getattr(o, "code", None) == 250 for o in outcome)
    assert find_delivered(settings.maildir, b"crash-1") == []

    stack.restart("mailserver")
    wait_for(lambda: find_delivered(settings.maildir, b"crash-1"), 60, "the re-driven delivery")
    wait_for(lambda: not any(queue.iterdir()), 20, "an empty spool")
    # The old jobs (from before the kill) also finished; neither run may deliver twice.
    assert len(find_delivered(settings.maildir, b"crash-1")) == 1
    assert send(make_message(X_Test_Id="after-crash"), settings.smtp_port).code == 250
