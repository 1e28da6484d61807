"""The message log: every final outcome in a database, searchable (SQLite or PostgreSQL)."""
