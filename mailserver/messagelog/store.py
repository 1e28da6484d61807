"""The message log's database: write outcomes, search them, read one, forget old ones.

The API the console and the command line call: ``search(criteria, page)`` and
``get(spool_id)``, both returning ``MessageRecord``. The schema is brought up to date on
first use (migrations.py). Database errors are SQLAlchemy's (``SQLAlchemyError``); the
writer (writer.py) retries them, the command line reports them in one line."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from mailserver.messagelog import migrations
from mailserver.messagelog.database import database_url, open_engine
from mailserver.messagelog.query import (
    PER_PAGE,
    Criteria,
    normal_address,
    normal_message_id,
    search_query,
)
from mailserver.messagelog.record import MessageRecord
from mailserver.messagelog.schema import messages, recipients
from tasks.settings import Settings

SUBJECT_COLUMN = 200


class MessageStore:
    """One database; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ready = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> MessageStore:
        return cls(open_engine(database_url(settings)))

    def ready(self) -> None:
        """Migrate the schema once per process (raises while the database is away)."""
        with self._lock:
            if not self._ready:
                migrations.migrate(self.engine)
                self._ready = True

    def insert(self, records: Sequence[MessageRecord]) -> None:
        """All or nothing, in one transaction; a record already stored is left as it is."""
        if not records:
            return
        self.ready()
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        with self.engine.begin() as connection:
            connection.execute(
                insert(messages).on_conflict_do_nothing(), [_message_row(r) for r in records]
            )
            rows = [row for r in records for row in _recipient_rows(r)]
            if rows:
                connection.execute(insert(recipients).on_conflict_do_nothing(), rows)

    def search(
        self, criteria: Criteria, page: int = 1, per_page: int = PER_PAGE
    ) -> list[MessageRecord]:
        """Newest first, ``per_page`` to a page; pages count from 1."""
        self.ready()
        with self.engine.connect() as connection:
            bodies = connection.scalars(search_query(criteria, page, per_page))
            return [MessageRecord.from_json(json.loads(body)) for body in bodies]

    def get(self, spool_id: str) -> MessageRecord | None:
        """The latest outcome of the message with this spool id, if the log has it."""
        self.ready()
        query = (
            select(messages.c.body)
            .where(messages.c.spool_id == spool_id.strip())
            .order_by(messages.c.at.desc())
            .limit(1)
        )
        with self.engine.connect() as connection:
            body = connection.scalar(query)
        return MessageRecord.from_json(json.loads(body)) if body else None

    def prune(self, before: float) -> int:
        """Forget the outcomes recorded before ``before`` (a Unix time); how many went."""
        self.ready()
        with self.engine.begin() as connection:
            connection.execute(delete(recipients).where(recipients.c.at < before))
            gone = connection.execute(delete(messages).where(messages.c.at < before))
        return gone.rowcount

    def close(self) -> None:
        self.engine.dispose()


def _message_row(record: MessageRecord) -> dict[str, Any]:
    return {
        "record_id": record.record_id,
        "at": record.at,
        "spool_id": record.spool_id,
        "message_id": normal_message_id(record.message_id)[:255],
        "mail_from": normal_address(record.mail_from)[:320],
        "client_ip": record.client_ip,
        "verdict": record.verdict,
        "action": record.action,
        "size": record.size,
        "subject": record.subject[:SUBJECT_COLUMN],
        "body": json.dumps(record.to_json()),
    }


def _recipient_rows(record: MessageRecord) -> Iterable[dict[str, Any]]:
    addresses = {normal_address(r.address)[:320] for r in record.recipients}
    return ({"record_id": record.record_id, "address": a, "at": record.at} for a in addresses)
