"""The notice to the sender of a virus after the queue, over real SMTP: two post-queue fronts
relaying to one next hop, on the session's pools. By default no notice goes out (the sender
of a virus is usually forged); with ``MAILSCAN_VIRUS_SENDER_NOTICE=yes`` one goes to the
sender, from the empty sender, naming the virus and carrying nothing of the message."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from mailserver.supervisor.stack import Stack
from tasks.settings import Settings, load_settings
from tests.conftest import EICAR, make_message, port, send, wait_for
from tests.smtp_ends import NextHop

pytestmark = pytest.mark.integration

HOP, QUIET, TELLING = port(13100), port(13101), port(13102)


@pytest.fixture(scope="module")
def hop() -> Iterator[NextHop]:
    with NextHop(HOP) as next_hop:
        yield next_hop


def _front(settings: Settings, name: str, smtp_port: int, **overrides: str) -> Iterator:
    env = {
        **os.environ,
        "MAILSCAN_VAR_DIR": str(settings.var_dir / name),
        "MAILSCAN_SMTP_PORT": str(smtp_port),
        "MAILSCAN_METRICS_PORT": str(smtp_port + 10),
        "MAILSCAN_MODE": "post-queue",
        "MAILSCAN_DELIVERY": "relay",
        "MAILSCAN_RELAY": f"127.0.0.1:{HOP}",
        **overrides,
    }
    front = Stack(load_settings(env), env)
    front.start(["mailserver"], progress=lambda _: None)
    try:
        yield front.settings
    finally:
        front.stop()


@pytest.fixture(scope="module")
def quiet(stack, settings, hop) -> Iterator[Settings]:
    yield from _front(settings, "notice-default", QUIET)


@pytest.fixture(scope="module")
def telling(stack, settings, hop) -> Iterator[Settings]:
    yield from _front(settings, "notice-on", TELLING, MAILSCAN_VIRUS_SENDER_NOTICE="yes")


def virus(marker: str) -> bytes:
    return make_message(body=f"secret body text {marker}", attachment=EICAR,
                        subject=f"secret subject {marker}").as_bytes()  # fmt: skip


def quarantined(front: Settings, marker: str) -> bool:
    return any(marker.encode() in p.read_bytes() for p in front.quarantine_dir.glob("*.eml"))


def test_by_default_a_virus_is_quarantined_and_nobody_is_told(quiet, hop):
    assert send(virus("notice-off"), quiet.smtp_port).code == 250
    wait_for(lambda: quarantined(quiet, "notice-off"), 60, "the virus in the quarantine")
    clean = make_message(body="a clean message after the virus (notice-off)")
    assert send(clean, quiet.smtp_port).code == 250
    wait_for(lambda: hop.copies("bob@example.test", b"after the virus (notice-off)") == 1, 60,
             "the clean message at the next hop")  # fmt: skip
    assert [r for r in hop.received if r.bounce] == []


def test_with_the_setting_the_sender_gets_a_notice_without_the_message(telling, hop):
    before = len([r for r in hop.received if r.bounce])
    assert send(virus("notice-on"), telling.smtp_port).code == 250
    wait_for(lambda: quarantined(telling, "notice-on"), 60, "the virus in the quarantine")
    wait_for(lambda: len([r for r in hop.received if r.bounce]) > before, 30, "the notice")
    notices = [r for r in hop.received if r.bounce][before:]
    assert len(notices) == 1
    [told] = notices
    assert told.rcpt_tos == ["alice@example.test"]
    assert b"Subject: Virus found in a message from your address" in told.content
    assert re.search(rb"\r\nVirus: \S*(?i:eicar)", told.content), told.content
    assert b"Recipients: bob@example.test" in told.content
    assert b"kept in quarantine" in told.content
    for secret in (b"notice-on", b"EICAR-STANDARD", b"secret"):
        assert secret not in told.content
    assert hop.copies("bob@example.test", b"notice-on") == 0
