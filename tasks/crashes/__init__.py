"""Crash records: what a plugin failure leaves behind (records), where they are kept
(store), what became of each (reports), and the report that leaves the server (payload): a
summary built by allow-list (summary), and on request the scrubbed details (scrub)."""
