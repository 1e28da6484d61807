"""Mail on disk is for the service alone: whatever umask it was started with, the SMTP front
(``mailscan serve``, as ``mailscan up`` starts it) writes its spool, retry records, Maildir
and quarantine as 0600 files in 0700 folders. Fronts of their own, on the session's Redis
and pools, fed by real SMTP."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver.supervisor.stack import Stack
from tasks.settings import Settings, load_settings
from tests.conftest import EICAR, make_message, port, send, wait_for

pytestmark = pytest.mark.integration


def _front(settings: Settings, name: str, n: int, **overrides: str) -> Iterator[Settings]:
    env = {
        **os.environ,
        "MAILSCAN_VAR_DIR": str(settings.var_dir / name),
        "MAILSCAN_SMTP_PORT": str(port(12760) + n),
        "MAILSCAN_METRICS_PORT": str(port(19260) + n),
        "MAILSCAN_HOSTNAME": f"front-{name}",
        "MAILSCAN_MODE": "post-queue",
        **{f"MAILSCAN_{key.upper()}": value for key, value in overrides.items()},
    }
    front_settings = load_settings(env)
    front = Stack(front_settings, env)
    everyone_reads = os.umask(0o022)  # what a careless service manager would hand it
    try:
        front.start(["mailserver"], progress=lambda _: None)
    finally:
        os.umask(everyone_reads)
    try:
        yield front_settings
    finally:
        front.stop()


@pytest.fixture(scope="module")
def maildir_front(stack, settings) -> Iterator[Settings]:
    yield from _front(settings, "private-maildir", 0)


@pytest.fixture(scope="module")
def stuck_front(stack, settings) -> Iterator[Settings]:
    """Relays to a next hop that is down: its mail stays in the spool, with retry records."""
    yield from _front(settings, "private-stuck", 1, delivery="relay",
                      relay=f"127.0.0.1:{port(12769)}")  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(files: list[Path], folders: list[Path]) -> None:
    assert files
    assert {str(f): oct(mode(f)) for f in files} == {str(f): "0o600" for f in files}
    assert {str(d): oct(mode(d)) for d in folders} == {str(d): "0o700" for d in folders}


def test_delivered_and_quarantined_mail_is_readable_by_the_service_only(maildir_front):
    front = maildir_front
    assert send(make_message(X_Test_Id="private-clean"), front.smtp_port).code == 250
    assert send(make_message(attachment=EICAR), front.smtp_port).code == 250
    delivered = front.maildir / "new"
    wait_for(lambda: any(delivered.iterdir()), 30, "the delivered message")
    wait_for(lambda: len(list(front.quarantine_dir.iterdir())) == 2, 30, "the quarantined one")
    assert_private(
        [*delivered.iterdir(), *front.quarantine_dir.iterdir()],
        [front.maildir, delivered, front.maildir / "tmp", front.quarantine_dir],
    )


def test_spooled_mail_is_readable_by_the_service_only(stuck_front):
    front = stuck_front
    assert send(make_message(X_Test_Id="private-stuck"), front.smtp_port).code == 250
    retry = front.spool_dir / "retry"
    wait_for(lambda: retry.is_dir() and any(retry.iterdir()), 30, "the retry record")
    queue = front.spool_dir / "queue"
    assert_private([*queue.iterdir(), *retry.iterdir()],
                   [front.spool_dir, queue, retry, front.spool_dir / "tmp"])  # fmt: skip
