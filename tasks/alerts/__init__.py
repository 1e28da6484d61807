"""Alerts an administrator must hear of: a virus found, a banned attachment, a circuit
breaker opened or closed, a new crash group, a corrupt spool entry, a dead-lettered message.

    events.py     raise_alert: a small record on a capped Redis stream, from any process
    ratelimit.py  one notice per kind and window, the rest in a digest (pure)
    dispatch.py   beat's dispatcher: cursor, windows and outbox in Redis, retries
    channels.py   the webhook (JSON POST) and the administrator's mailbox
"""
