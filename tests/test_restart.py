"""Restart safety: a crash of the SMTP front loses nothing and delivers nothing twice."""

import os
import signal
import smtplib
import threading

import pytest

from tests.conftest import find_delivered, make_message, send, wait_for

pytestmark = pytest.mark.integration


def test_a_message_whose_sender_was_never_answered_is_delivered_once_when_resent(stack, settings):
    queue = settings.spool_dir / "queue"
    spam_pool = stack.pid("spam-worker")
    # Hold the spam pool so the message is spooled but cannot finish before the kill.
    os.killpg(spam_pool, signal.SIGSTOP)
    outcome: list[object] = []
    message = make_message(X_Test_Id="crash-1")

    def sender() -> None:
        try:
            outcome.append(send(message, settings.smtp_port))
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
    # The sender still has the message and sends it again (as an MTA does): the copy the
    # killed session spooled must not be delivered as well.
    wait_for(lambda: not any(queue.iterdir()), 20, "the unanswered entry gone")
    assert find_delivered(settings.maildir, b"crash-1") == []
    assert "its sender was never answered" in stack.log_tail("mailserver", 50)
    assert send(message, settings.smtp_port).code == 250
    # The old jobs (from before the kill) also finished; nothing may deliver it twice.
    assert len(find_delivered(settings.maildir, b"crash-1")) == 1
