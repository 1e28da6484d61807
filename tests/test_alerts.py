"""Alerts over the real thing: mail with a virus or a banned attachment through the real
front, pools, beat's dispatcher on the ops worker, to a webhook (an HTTP server in this
process) and by mail through the relay (an SMTP sink in this process), rate-limited per kind
with a digest; a webhook that is down is tried again until it answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.alerts.events import raise_alert
from tasks.settings import Settings, load_settings
from tasks.wire.keys import ALERTS_OUTBOX_KEY
from tests.attachment_samples import with_attachment
from tests.conftest import EICAR, POOLS, port, send, stack_env, wait_for

pytestmark = pytest.mark.integration

# The session stack's Redis, clamd and spamd; pools, front, ops worker and beat of their
# own on a database of their own, so their alerts and jobs meet no other test's.
ALERTS_DB = 5
SMTP_PORT, WEBHOOK_PORT, SINK_PORT = (port(12525) + n for n in (150, 151, 152))
WINDOW_S = 10.0  # wide enough for the burst on a busy machine
ADMIN = "postmaster@example.test"


class Webhook:
    """An HTTP server taking JSON POSTs; ``stop`` and ``start`` again on the same port."""

    def __init__(self, port: int) -> None:
        self.port, self.received = port, []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["Content-Type"], body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def notices(self, kind: str) -> list[dict[str, Any]]:
        found = [json.loads(body) for _, body in list(self.received)]
        return [n for n in found if n["kind"] == kind]


class Mailbox:
    """The administrator's mailbox: an SMTP sink (aiosmtpd) keeping what it is sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    def subjects(self, containing: str) -> list[str]:
        found = [str(message_from_bytes(raw, policy=policy.default)["Subject"])
                 for _, raw in list(self.messages)]  # fmt: skip
        return [s for s in found if containing in s]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    server = Webhook(WEBHOOK_PORT)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=SINK_PORT)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture(scope="module")
def alerting(stack, webhook, mailbox) -> Iterator[Settings]:
    env = stack_env(
        "alerts", 0,
        redis_url=f"redis://127.0.0.1:{port(16390)}/{ALERTS_DB}",
        av_plugins="clamav,banned",
        smtp_port=str(SMTP_PORT),
        metrics_port=str(SMTP_PORT + 7000),
        alert_webhook=f"http://127.0.0.1:{WEBHOOK_PORT}/hooks/mailscan",
        alert_email=ADMIN,
        relay=f"127.0.0.1:{SINK_PORT}",
        alert_every_s=str(WINDOW_S),
        alert_send_every_s="1",
    )  # fmt: skip
    running = Stack(load_settings(env), env)
    redisauth.connect(running.settings).flushdb()  # a rerun starts with no alert of before
    try:
        running.start([*POOLS, "ops-worker", "beat", "mailserver"], progress=lambda _: None)
        yield running.settings
    finally:
        running.stop()


def _marked(message: EmailMessage) -> tuple[EmailMessage, str]:
    """The message with a marker in its body and its subject, which no alert may carry."""
    marker = f"private-words-{time.time_ns()}"
    del message["Subject"]
    message["Subject"] = f"Subject {marker}"
    message.get_body(("plain",)).set_content(f"Body text {marker}, not for any alert.")
    return message, marker


def _virus_mail() -> tuple[EmailMessage, str]:
    return _marked(with_attachment("notes.txt", EICAR, "text/plain"))


def test_a_banned_attachment_reaches_the_webhook_and_the_mailbox_without_the_body(
    alerting, webhook, mailbox
):
    message, marker = _marked(with_attachment("invoice.pdf.exe", b"MZ bytes", "application/pdf"))
    assert send(message, alerting.smtp_port).code == 550
    wait_for(lambda: webhook.notices("banned"), 20, "the banned alert at the webhook")
    [notice] = webhook.notices("banned")
    assert notice["facts"]["part"] == "invoice.pdf.exe"
    assert notice["facts"]["sender"] == "alice@example.test"
    assert notice["facts"]["recipients"] == ["bob@example.test"]
    assert notice["digest"] is False
    assert all(kind == "application/json" for kind, _ in webhook.received)
    assert not [body for _, body in webhook.received if marker.encode() in body]
    wait_for(lambda: mailbox.subjects("invoice.pdf.exe"), 20, "the banned alert by mail")
    [(rcpts, raw)] = [m for m in mailbox.messages if b"invoice.pdf.exe" in m[1]]
    assert rcpts == [ADMIN]
    assert marker.encode() not in raw
    text = message_from_bytes(raw, policy=policy.default).get_content()
    assert "part: invoice.pdf.exe" in text


def test_a_burst_of_viruses_gives_one_alert_and_one_digest_of_the_rest(alerting, webhook, mailbox):
    burst = [_virus_mail() for _ in range(4)]
    replies: list[int] = []
    senders = [
        threading.Thread(target=lambda m=m: replies.append(send(m, alerting.smtp_port).code))
        for m, _ in burst
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(60)
    assert replies == [550] * 4
    wait_for(lambda: any(n["digest"] for n in webhook.notices("virus")), WINDOW_S + 15,
             "the digest of the viruses")  # fmt: skip
    time.sleep(2)  # a second digest would come on the next run or two
    notices = webhook.notices("virus")
    assert [n["digest"] for n in notices] == [False, True]
    assert "EICAR" in notices[0]["facts"]["virus"]
    assert notices[1]["count"] == 3
    assert notices[1]["summary"].startswith("3 more virus alerts: virus ")
    assert "EICAR" in notices[1]["summary"]
    wait_for(lambda: len(mailbox.subjects("virus")) == 2, 20, "both virus alerts by mail")
    assert "3 more virus alerts" in mailbox.subjects("virus")[1]
    everything = b"".join(raw for _, raw in mailbox.messages) + b"".join(
        body for _, body in webhook.received
    )
    assert not [marker for _, marker in burst if marker.encode() in everything]


def test_a_webhook_that_is_down_gets_the_alert_once_it_is_back(alerting, webhook, mailbox):
    client = redisauth.connect(alerting)
    webhook.stop()
    try:
        raise_alert(client, "dead-letter", "message m1 dead-lettered: next hop refused",
                    id="m1", reason="550 no such user")  # fmt: skip

        def retried() -> bool:
            held = [json.loads(raw) for raw in client.hvals(ALERTS_OUTBOX_KEY)]
            return any(d["channel"] == "webhook" and d["attempts"] >= 2 for d in held)

        wait_for(retried, 20, "a second failed attempt at the webhook")
        assert webhook.notices("dead-letter") == []
        # The mail went out meanwhile: a channel that is down holds back only itself.
        assert mailbox.subjects("dead-lettered")
    finally:
        webhook.start()
    wait_for(lambda: webhook.notices("dead-letter"), 20, "the alert once the webhook is back")
    wait_for(lambda: not client.hlen(ALERTS_OUTBOX_KEY), 10, "an empty outbox")
    assert len(webhook.notices("dead-letter")) == 1
    assert webhook.notices("dead-letter")[0]["facts"] == {"id": "m1", "reason": "550 no such user"}
