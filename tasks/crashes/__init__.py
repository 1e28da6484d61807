"""Crash records: what a plugin failure leaves behind (records), where they are kept
(store), what became of each (reports), and what a report may carry off the server (scrub)."""
