"""The default crash report, built by allow-list: what it keeps of a crashdump (where the
plugin failed, versions, a keyed hash of the message) and that every other value, or one of
the wrong shape, stays behind."""

from __future__ import annotations

import json
import sysconfig

from tasks.crashes import records as crashdumps
from tasks.crashes.payload import added_details, build, message_key
from tasks.crashes.records import Incident
from tasks.crashes.scrub import scrubber_for
from tasks.crashes.summary import UNFIT, faulthandler_frames, relative_file, summarize

SCRUB = scrubber_for(b"k" * 32)
KEY = message_key(SCRUB)
SECRET_TEXT = "lost clamd scanning for erin@example.test, Subject: Board minutes"


def a_plugin_failure() -> None:
    raise ConnectionError(SECRET_TEXT)


def recorded() -> dict:
    incident = Incident("connection", "av", {"name": "clamav", "config": "erin@example.test"},
                        "job-1", {"blob": "b" * 24, "size": 7, "digest": "d" * 64},
                        worker_host="av@mx1.corp.example.com", note=SECRET_TEXT)  # fmt: skip
    try:
        a_plugin_failure()
    except ConnectionError as error:
        crashdumps.from_exception(incident, error)
    return crashdumps.record(incident)


def test_the_summary_says_where_it_failed_and_nothing_of_the_mail():
    dump = recorded()
    summary = summarize(dump, KEY)
    assert summary["frames"][-1] == f"tests/test_crash_summary.py:a_plugin_failure:{_line()}"
    assert summary["exception"]["type"] == "ConnectionError"
    assert (summary["kind"], summary["pool"], summary["plugin"]) == ("connection", "av", "clamav")
    assert summary["signature"] == dump["signature"]
    assert summary["versions"]["python"] == dump["versions"]["python"]
    text = json.dumps(summary)
    for leak in ("erin", "Board", "corp.example.com", "mx1", "job-1", "d" * 64):
        assert leak not in text


def _line() -> int:
    return a_plugin_failure.__code__.co_firstlineno + 1


def test_the_message_is_a_keyed_hash_equal_for_equal_messages():
    first = summarize(recorded(), KEY)["exception"]["message_hash"]
    assert first == summarize(recorded(), KEY)["exception"]["message_hash"]
    assert len(first) == 16
    other_key = message_key(scrubber_for(b"another console secret, long enough"))
    assert summarize(recorded(), other_key)["exception"]["message_hash"] != first
    assert SECRET_TEXT not in json.dumps(summarize(recorded(), KEY))


def test_a_value_of_the_wrong_shape_becomes_a_question_mark():
    dump = recorded()
    dump |= {"pool": "av pool erin@example.test", "signal": "SIGSEGV; rm", "kind": "Subject"}
    dump["exception"]["type"] = "Error: Board minutes"
    dump["plugin"]["name"] = "erin@example.test"
    dump["frames"] = [["/x/erin@example.test/a.py", "f g", "12"]]
    summary = summarize(dump, KEY)
    assert (summary["pool"], summary["signal"], summary["kind"]) == (UNFIT, UNFIT, UNFIT)
    assert (summary["exception"]["type"], summary["plugin"]) == (UNFIT, UNFIT)
    assert summary["frames"] == ["a.py:?:0"]


def test_files_are_named_from_their_package_on():
    site = sysconfig.get_paths()["purelib"]
    assert relative_file(f"{site}/celery/app/trace.py") == "celery/app/trace.py"
    assert relative_file("/usr/lib/python3/dist-packages/redis/client.py") == "redis/client.py"
    assert relative_file(f"{sysconfig.get_paths()['stdlib']}/threading.py") == "threading.py"
    assert relative_file("/home/erin/plugins/private_engine.py") == "private_engine.py"


def test_a_faulthandler_dump_gives_the_frames_of_each_thread():
    dump = (
        "Fatal Python error: Segmentation fault\n\n"
        'Current thread 0x00007f (most recent call first):\n  File "/srv/x/engine.py", line 7 '
        'in inflate\n  File "/srv/x/engine.py", line 3 in scan\n\n'
        'Thread 0x00007e (most recent call first):\n  File "/usr/lib/python3.11/threading.py",'
        " line 320 in wait\n"
    )
    assert faulthandler_frames(dump) == [
        ["engine.py:inflate:7", "engine.py:scan:3"],
        ["threading.py:wait:320"],
    ]


def test_details_come_only_when_chosen_and_are_exactly_what_they_add():
    dump = recorded()
    plain, detailed = build([dump], SCRUB), build([dump], SCRUB, details=True)
    assert "details" not in plain["crashdumps"][0]
    assert plain["report_id"] == detailed["report_id"]
    [added] = added_details(detailed)
    assert {k: v for k, v in detailed["crashdumps"][0].items() if k != "details"} == (
        plain["crashdumps"][0]
    )
    assert added == {"id": dump["id"], "details": detailed["crashdumps"][0]["details"]}
    details = json.dumps(added)
    assert "ConnectionError" in details  # the traceback, scrubbed
    assert "[email-" in details
    for leak in ("erin@", "Board minutes", "mx1.corp"):
        assert leak not in details
