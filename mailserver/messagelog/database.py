"""Which database the message log lives in, and the engine that talks to it.

SQLite gets what a log written by one process and read by others needs: write-ahead
logging (a search never waits for the writer), a busy timeout instead of an instant error
while another process writes, and transactions that begin when we say so (Python's sqlite3
would begin them itself, at the first write, too late for a migration that reads first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from tasks.redisauth import masked
from tasks.settings import Settings

SQLITE_FILE = "messages.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 5


def database_url(settings: Settings) -> URL:
    """The SQLAlchemy URL: psycopg 3 for PostgreSQL, SQLite under the var folder by default."""
    if not settings.database_url:
        return make_url(f"sqlite:///{settings.message_log_dir / SQLITE_FILE}")
    url = make_url(settings.database_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def shown(settings: Settings) -> str:
    """The database for messages and logs, its password masked."""
    return masked(settings.database_url) or str(database_url(settings))


def open_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )


def _sqlite_engine(url: URL) -> Engine:
    if url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we begin transactions ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock at once: a migration that reads, then writes,
        # cannot lose a race to another process between the two.
        mode = connection.get_execution_options().get("sqlite_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine
