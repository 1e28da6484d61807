"""Real mail over SMTP to the real stack, found in the message log with `mailscan messages`:
by each search field, with its verdict, spam rules and per-step times; a message refused
550 and one answered 451 too, with their reason. On SQLite and on PostgreSQL. Then the
PostgreSQL cluster stopped under a stream of mail: no reply waits, nothing is lost."""

from __future__ import annotations

import json
import os
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

import pytest

from mailserver.messagelog.query import Criteria
from mailserver.messagelog.store import MessageStore
from mailserver.supervisor.stack import Stack
from tasks.settings import Settings, load_settings
from tests.conftest import EICAR, GTUBE, mailscan, make_message, on_the_wire, port, wait_for
from tests.smtp_ends import NextHop

pytestmark = pytest.mark.integration
LATER = "later@example.test"  # the next hop answers 451 for this recipient
REFUSED = "nobody@example.test"  # and 550 for this one
STEPS = {"spool", "enqueue", "queue.av", "queue.spam", "scan.av", "scan.spam", "delivery"}


@pytest.fixture(scope="module")
def next_hop() -> Iterator[NextHop]:
    refuse = {LATER: "451 4.3.0 Mailbox busy, try later", REFUSED: "550 5.1.1 No such user"}
    with NextHop(port(12970), refuse=refuse) as hop:
        yield hop


@dataclass
class Front:
    settings: Settings
    env: dict[str, str]

    def store(self) -> MessageStore:
        return MessageStore.from_settings(self.settings)

    def messages(self, *args: str) -> list[dict]:
        done = mailscan("messages", *args, "--json", env=self.env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _front(stack, settings: Settings, name: str, n: int, **overrides: str) -> Iterator[Front]:
    env = {
        **os.environ,
        "MAILSCAN_VAR_DIR": str(settings.var_dir / name),
        "MAILSCAN_SMTP_PORT": str(port(12960) + n),
        "MAILSCAN_METRICS_PORT": str(port(19360) + n),
        "MAILSCAN_HOSTNAME": f"front-{name}",
        "MAILSCAN_DELIVERY": "relay",
        "MAILSCAN_RELAY": f"127.0.0.1:{port(12970)}",
        **{f"MAILSCAN_{key.upper()}": value for key, value in overrides.items()},
    }
    front_settings = load_settings(env)
    front = Stack(front_settings, env)
    front.start(["mailserver"], progress=lambda _: None)
    try:
        yield Front(front_settings, env)
    finally:
        front.stop()


@pytest.fixture(scope="module")
def sqlite_front(stack, settings, next_hop) -> Iterator[Front]:
    yield from _front(stack, settings, "log-sqlite", 0)


@pytest.fixture(scope="module")
def pg_front(stack, settings, next_hop, pg_cluster) -> Iterator[Front]:
    yield from _front(stack, settings, "log-pg", 1, database_url=pg_cluster.url)


@pytest.fixture(params=["sqlite", "postgresql"])
def front(request) -> Front:
    return request.getfixturevalue("sqlite_front" if request.param == "sqlite" else "pg_front")


def _send(front: Front, message: EmailMessage, rcpt: str = "") -> tuple[int, str, str, str]:
    """Sent from an address of its own to a recipient of its own (so a search finds this
    message alone); the reply code and text, the sender and the recipient."""
    unique = f"{time.time_ns():x}"
    sender, rcpt = f"s{unique}@example.test", rcpt or f"r{unique}@example.test"
    with smtplib.SMTP("127.0.0.1", front.settings.smtp_port, timeout=120) as client:
        client.ehlo("client.example.test")
        client.mail(sender)
        client.rcpt(rcpt)
        code, text = client.data(on_the_wire(message))
    return code, text.decode(), sender, rcpt


def _logged(front: Front, message: EmailMessage) -> dict:
    """The message's record, once the front's writer has put it in the database."""
    store = front.store()
    try:
        criteria = Criteria(message_id=message["Message-ID"])
        wait_for(lambda: store.search(criteria), 30, f"{message['Message-ID']} in the log")
    finally:
        store.close()
    [found] = front.messages("--message-id", message["Message-ID"])
    return found


def _ids(records: list[dict]) -> set[str]:
    return {r["spool_id"] for r in records}


def test_spam_sent_over_smtp_is_found_by_each_field_with_rules_and_times(front):
    message = make_message(body=f"Buy now.\n{GTUBE}\n", subject="Cheap offer today")
    code, text, sender, rcpt = _send(front, message)
    assert code == 250, text
    record = _logged(front, message)
    spool_id = record["spool_id"]
    assert text.endswith(spool_id)
    assert record["verdict"] == "spam"
    assert record["action"] == "deliver"
    assert "GTUBE" in record["verdicts"]["spam"]["verdicts"][0]["rules"]
    assert record["policy"].startswith("spam: tagged")
    assert set(record["steps_ms"]) >= STEPS, record["steps_ms"]
    assert record["steps_ms"]["scan.spam.spamassassin"] > 0
    assert record["next_hop"].startswith("250")
    assert record["recipients"] == [{"address": rcpt, "outcome": "delivered",
                                     "detail": record["next_hop"]}]  # fmt: skip
    assert record["client_ip"] == "127.0.0.1"
    assert record["helo"] == "client.example.test"
    assert record["subject"] == "Cheap offer today"
    assert record["size"] > 0
    assert _ids(front.messages("--from", sender)) == {spool_id}
    assert _ids(front.messages("--to", rcpt.upper())) == {spool_id}
    for search in (["--client", "127.0.0.1"], ["--verdict", "spam"]):
        assert spool_id in _ids(front.messages(*search, "--since", "10m", "--limit", "500"))
    assert spool_id not in _ids(front.messages("--verdict", "clean", "--limit", "500"))
    shown = mailscan("messages", "show", spool_id, env=front.env)
    assert "GTUBE" in shown.stdout
    assert f"to {rcpt}: delivered" in shown.stdout


def test_a_virus_refused_550_is_found_with_its_reason(front):
    message = make_message(attachment=EICAR)
    code, text, sender, _ = _send(front, message)
    assert code == 550, text
    record = _logged(front, message)
    assert _ids(front.messages("--from", sender)) == {record["spool_id"]}
    assert record["verdict"] == "virus"
    assert record["action"] == "reject"
    assert record["reply"].startswith("550 5.7.1")
    assert "EICAR" in record["reason"].upper()
    assert record["policy"] == "virus: refused (pre-queue)"
    assert record["recipients"][0]["outcome"] == "refused"


def test_a_next_hop_refusal_is_logged_550_and_a_busy_one_451_with_its_words(front):
    refused = make_message()
    code, _, _, _ = _send(front, refused, REFUSED)
    assert code == 550
    record = _logged(front, refused)
    assert record["action"] == "reject"
    assert record["reply"].startswith("550")
    assert record["recipients"] == [{"address": REFUSED, "outcome": "failed",
                                     "detail": "550 5.1.1 No such user"}]  # fmt: skip
    later = make_message()
    code, text, _, _ = _send(front, later, LATER)
    assert code == 451, text
    record = _logged(front, later)
    assert record["verdict"] == "clean"
    assert record["action"] == "tempfail"
    assert record["reply"] == f"{code} {text}"
    assert "Mailbox busy" in record["next_hop"]
    assert _ids(front.messages("--to", LATER, "--since", "10m")) >= {record["spool_id"]}


def test_mail_flows_while_the_database_is_stopped_and_every_outcome_arrives(pg_front, pg_cluster):
    sent = [make_message(subject=f"during the outage {n}") for n in range(12)]
    pg_cluster.stop()
    try:
        slowest_s = 0.0
        for message in sent:
            started = time.monotonic()
            code, text, _, _ = _send(pg_front, message)
            slowest_s = max(slowest_s, time.monotonic() - started)
            assert code == 250, text
        journal = pg_front.settings.message_log_dir / "journal"
        assert any(journal.iterdir())  # kept beside the front meanwhile
    finally:
        pg_cluster.start()
    # A database write that waited would hang on its connect timeout, 5 s a message.
    assert slowest_s < 5.0
    store = pg_front.store()
    try:
        ids = [m["Message-ID"] for m in sent]
        wait_for(lambda: all(store.search(Criteria(message_id=i)) for i in ids), 60,
                 "every outcome of the outage in the log")  # fmt: skip
        assert len(store.search(Criteria(subject="during the outage"), per_page=100)) == 12
    finally:
        store.close()
