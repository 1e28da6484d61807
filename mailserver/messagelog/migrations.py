"""Versioned schema migrations, applied in order at start, each once, in a transaction.

A table of our own records the versions a database has had (``messagelog_schema``); a
database without it is at version 0. Alembic would do the same with a configuration file,
an environment script and a script folder shipped with the package; the log has two
tables and one code path that opens them (front, beat, console and command line alike), so
a list of steps here is the whole tool. Two processes starting at once do not both
migrate: PostgreSQL takes an advisory lock for the transaction, SQLite its write lock.

A change to schema.py comes with a new step that makes it; the steps already released
never change (version 1 creates the tables as they first were)."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, select

from mailserver.messagelog.schema import METADATA, messages, recipients, schema_version

# An arbitrary constant that names the migration lock among PostgreSQL's advisory locks.
MIGRATION_LOCK = 0x6D61696C7363616E


def _v1_tables(connection: Connection) -> None:
    METADATA.create_all(connection, tables=[messages, recipients])


STEPS: list[tuple[int, Callable[[Connection], None]]] = [(1, _v1_tables)]
LATEST = STEPS[-1][0]


def migrate(engine: Engine) -> int:
    """Bring the database to the latest version; return the versions applied now."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            schema_version.create(connection, checkfirst=True)
            done = set(connection.scalars(select(schema_version.c.version)))
            applied = 0
            for version, step in STEPS:
                if version not in done:
                    step(connection)
                    connection.execute(
                        schema_version.insert().values(version=version, applied_at=time.time())
                    )
                    applied += 1
        return applied


def current_version(engine: Engine) -> int:
    with engine.connect() as connection:
        if not engine.dialect.has_table(connection, schema_version.name):
            return 0
        return max(connection.scalars(select(schema_version.c.version)), default=0)
