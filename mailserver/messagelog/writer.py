"""The front's side of the message log: ``record`` from any thread, at once, into the
journal; ``run`` moves the journal into the database, and while the database is away
keeps trying, with a growing pause, so nothing waits for it and nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.exc import SQLAlchemyError

from mailserver.messagelog.database import shown
from mailserver.messagelog.journal import Journal
from mailserver.messagelog.record import MessageRecord
from mailserver.messagelog.store import MessageStore
from tasks.settings import Settings

log = logging.getLogger(__name__)
WRITE_EVERY_S = 0.5
LONGEST_PAUSE_S = 5.0
BATCH = 1000


class MessageLog:
    """Records final outcomes for the message log."""

    def __init__(self, journal: Journal, store: MessageStore, where: str = "") -> None:
        self.journal, self.store, self.where = journal, store, where
        self._away = False

    @classmethod
    def from_settings(cls, settings: Settings) -> MessageLog:
        journal = Journal(settings.message_log_dir / "journal")
        return cls(journal, MessageStore.from_settings(settings), shown(settings))

    def record(self, record: MessageRecord) -> None:
        """Never raises: the mail flow does not depend on its log."""
        try:
            self.journal.append(record)
        except Exception:
            log.exception("message log: outcome of %s not recorded", record.spool_id)

    async def run(self) -> None:
        pause_s = WRITE_EVERY_S
        try:
            while True:
                await asyncio.sleep(pause_s)
                if not self.journal.pending():
                    continue
                written = await asyncio.to_thread(self.write)
                pause_s = WRITE_EVERY_S if written else min(pause_s * 2, LONGEST_PAUSE_S)
        finally:
            with contextlib.suppress(Exception):
                self.write()  # at shutdown: what the last moment added, if it can

    def write(self) -> bool:
        """Everything in the journal into the database; False when the database is away
        (what was not written stays in the journal for the next call)."""
        try:
            for path in self.journal.seal():
                records = self.journal.read(path)
                for start in range(0, len(records), BATCH):
                    self.store.insert(records[start : start + BATCH])
                self.journal.done(path)
        except (SQLAlchemyError, OSError) as err:
            if not self._away:
                log.warning("message log: database %s unavailable, outcomes kept in %s "
                            "until it is back: %s", self.where, self.journal.folder,
                            str(err).splitlines()[0])  # fmt: skip
            self._away = True
            return False
        if self._away:
            log.warning("message log: database %s back, outcomes written", self.where)
        self._away = False
        return True
