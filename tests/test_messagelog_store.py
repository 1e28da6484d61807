"""The message log's store on both backends (SQLite, and a private PostgreSQL cluster):
each search field finds its message, the schema is versioned, old outcomes are pruned, and
the front's writer keeps outcomes in its journal while the database is away."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mailserver.messagelog import migrations
from mailserver.messagelog.database import open_engine
from mailserver.messagelog.journal import Journal
from mailserver.messagelog.query import Criteria
from mailserver.messagelog.record import MessageRecord, RecipientOutcome
from mailserver.messagelog.store import MessageStore
from mailserver.messagelog.writer import MessageLog


def _record(n: int, at: float, **fields) -> MessageRecord:
    values = {
        "at": at,
        "spool_id": f"spool{n:06d}",
        "mail_from": f"Sender{n % 7}@Example.test",
        "recipients": (RecipientOutcome(f"rcpt{n % 11}@example.test", "delivered"),),
        "verdict": ("clean", "spam", "virus")[n % 3],
        "action": "deliver",
        "reason": "clean",
        "message_id": f"<{n}.x@example.test>",
        "client_ip": f"192.0.2.{n % 5}",
        "subject": f"Report number {n}",
        **fields,
    }
    return MessageRecord(**values)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path) -> Iterator[MessageStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'messages.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        url = cluster.url
        _drop_tables(url)
    opened = MessageStore(open_engine(_driver(url)))
    yield opened
    opened.close()


def _driver(url: str):
    parsed = make_url(url)
    return (
        parsed.set(drivername="postgresql+psycopg") if parsed.drivername == "postgresql" else parsed
    )


def _drop_tables(url: str) -> None:
    engine = create_engine(_driver(url))
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS messages, recipients, messagelog_schema"))
    engine.dispose()


def test_each_search_field_finds_its_message_newest_first(store):
    now = time.time()
    store.insert([_record(n, now - 100 + n) for n in range(60)])
    assert [r.spool_id for r in store.search(Criteria(message_id="42.x@example.test"))] == [
        "spool000042"
    ]
    by_sender = store.search(Criteria(mail_from="SENDER3@example.test"))
    assert [r.spool_id for r in by_sender] == [
        f"spool{n:06d}" for n in range(59, -1, -1) if n % 7 == 3
    ]
    by_rcpt = store.search(Criteria(rcpt_to="rcpt4@example.test"))
    assert {r.spool_id for r in by_rcpt} == {f"spool{n:06d}" for n in range(60) if n % 11 == 4}
    assert all(r.client_ip == "192.0.2.2" for r in store.search(Criteria(client_ip="192.0.2.2")))
    assert len(store.search(Criteria(verdict="virus"))) == 20
    recent = store.search(Criteria(since=now - 100 + 50))
    assert [r.spool_id for r in recent][-1] == "spool000050"
    assert [r.spool_id for r in store.search(Criteria(subject="number 17"))] == ["spool000017"]
    assert len(store.search(Criteria(), page=2, per_page=25)) == 25
    assert store.search(Criteria(), page=3, per_page=25)[-1].spool_id == "spool000000"


def test_a_record_comes_back_whole_and_a_batch_sent_twice_is_kept_once(store):
    record = _record(1, time.time(), steps_ms={"spool": 1.5, "scan.spam": 80.0},
                     verdicts={"spam": {"pool": "spam", "status": "spam", "verdicts": [
                         {"engine": "spamassassin", "status": "spam", "score": 1000.0,
                          "rules": ["GTUBE"]}]}})  # fmt: skip
    store.insert([record])
    store.insert([record])
    assert store.get("spool000001") == record
    assert store.get("nosuchid") is None
    assert len(store.search(Criteria(message_id=record.message_id))) == 1
    assert store.get("spool000001").rules() == ["GTUBE"]


def test_old_outcomes_are_pruned(store):
    now = time.time()
    store.insert([_record(1, now - 40 * 86400), _record(2, now)])
    assert store.prune(now - 30 * 86400) == 1
    assert [r.spool_id for r in store.search(Criteria())] == ["spool000002"]
    assert store.search(Criteria(rcpt_to="rcpt1@example.test")) == []


def test_the_schema_is_versioned_and_migrated_once(store):
    assert migrations.current_version(store.engine) == 0
    store.ready()
    assert migrations.current_version(store.engine) == migrations.LATEST
    assert migrations.migrate(store.engine) == 0  # nothing left to apply


def test_the_writer_keeps_outcomes_while_the_database_is_away(tmp_path, pg_cluster):
    _drop_tables(pg_cluster.url)
    store = MessageStore(open_engine(_driver(pg_cluster.url)))
    writer = MessageLog(Journal(tmp_path / "journal"), store)
    pg_cluster.stop()
    try:
        for n in range(5):
            writer.record(_record(n, time.time()))
        assert writer.write() is False
        assert writer.journal.pending()
    finally:
        pg_cluster.start()
    writer.record(_record(5, time.time()))
    assert writer.write() is True
    assert sorted(r.spool_id for r in store.search(Criteria())) == [
        f"spool{n:06d}" for n in range(6)
    ]
    assert not writer.journal.pending()
    store.close()


def test_a_line_cut_short_by_a_crash_costs_only_itself(tmp_path):
    journal = Journal(tmp_path)
    journal.append(_record(1, time.time()))
    with open(tmp_path / "current.jsonl", "ab") as handle:
        handle.write(b'{"at": 1, "spool_')
    [sealed] = journal.seal()
    assert [r.spool_id for r in journal.read(sealed)] == ["spool000001"]
