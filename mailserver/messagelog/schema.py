"""The message log's tables, in their current shape (migrations.py brings a database there).

``messages`` has one row per final outcome: the searched fields in columns of their own,
each indexed together with the time (a search answers newest first, a page at a time, so
the index gives the rows already in order), and the whole record as JSON in ``body``.
``recipients`` has one row per recipient of each outcome, with the time again, for the same
reason. Addresses are kept lower-cased in the searched columns: a search ignores case."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

METADATA = MetaData()

messages = Table(
    "messages",
    METADATA,
    Column("record_id", String(32), primary_key=True),
    Column("at", Float, nullable=False),
    Column("spool_id", String(64), nullable=False),
    Column("message_id", String(255), nullable=False, default=""),
    Column("mail_from", String(320), nullable=False, default=""),
    Column("client_ip", String(64), nullable=False, default=""),
    Column("verdict", String(16), nullable=False),
    Column("action", String(16), nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    # Searched by words within a time range or another field: no index of its own.
    Column("subject", String(200), nullable=False, default=""),
    Column("body", Text, nullable=False),
    Index("messages_at", "at"),
    Index("messages_spool_id", "spool_id"),
    Index("messages_message_id", "message_id"),
    Index("messages_from_at", "mail_from", "at"),
    Index("messages_client_at", "client_ip", "at"),
    Index("messages_verdict_at", "verdict", "at"),
)

recipients = Table(
    "recipients",
    METADATA,
    Column("record_id", String(32), primary_key=True),
    Column("address", String(320), primary_key=True),
    Column("at", Float, nullable=False),
    Index("recipients_address_at", "address", "at"),
    Index("recipients_at", "at"),
)

# Which migrations a database has had (migrations.py).
schema_version = Table(
    "messagelog_schema",
    METADATA,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)
