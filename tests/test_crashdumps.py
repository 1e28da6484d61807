"""Crashdump records on their own: what a record keeps of texts of any size."""

from __future__ import annotations

import json

from tasks.crashes import records as crashdumps
from tasks.crashes.records import MAX_MESSAGE_CHARS, MAX_TRACE_CHARS, Incident

# A faulthandler dump lists the innermost frame first, then the outer ones.
INNERMOST = 'File "/plugins/engine.py", line 7 in inflate\n'
OUTERMOST = 'File "/usr/lib/python3/threading.py", line 1 in _bootstrap\n'


def incident(**texts: str) -> Incident:
    return Incident("crash", "av", {"name": "engine"}, "job-1", {"blob": "b"}, **texts)


def test_a_huge_faulthandler_dump_and_thread_stacks_keep_head_and_tail():
    dump = INNERMOST + 'File "/plugins/engine.py", line 9 in loop\n' * 200_000 + OUTERMOST
    record = crashdumps.record(incident(faulthandler=dump, threads=dump))
    for field in ("faulthandler", "threads"):
        kept = record[field]
        assert len(kept) < MAX_TRACE_CHARS + 100
        assert kept.startswith(INNERMOST)
        assert kept.endswith(OUTERMOST)
        cut = len(dump) - MAX_TRACE_CHARS
        assert f"[... {cut} characters cut ...]" in kept
    assert len(json.dumps(record)) < 3 * MAX_TRACE_CHARS


def test_a_huge_exception_message_is_capped_and_says_so():
    record = crashdumps.record(incident(exception_message="a" * 100 + "b" * 10**6 + "z" * 100))
    message = record["exception"]["message"]
    assert len(message) < MAX_MESSAGE_CHARS + 100
    assert message.startswith("a" * 100)
    assert message.endswith("z" * 100)
    assert "characters cut" in message
    short = crashdumps.record(incident(exception_message="short"))
    assert short["exception"]["message"] == "short"


def test_a_cut_dump_keeps_the_signature_of_the_whole():
    whole = INNERMOST + "x" * (10 * MAX_TRACE_CHARS) + OUTERMOST
    record = crashdumps.record(incident(faulthandler=whole))
    assert "characters cut" in record["faulthandler"]
    assert record["signature"] == crashdumps.signature(incident(faulthandler=INNERMOST))
