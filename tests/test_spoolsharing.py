"""When the front sends big messages to the pools through its spool, and when through Redis:
from the pools' health probes and their jobs."""

import logging
from pathlib import Path

from mailserver.front.spoolsharing import SpoolSharing

OURS = "ab12"


def probe(pool: str, seen: str | None, at: float) -> dict:
    return {"pool": pool, "worker": f"{pool}@mx1", "at": at, "spool": {"dir": "/s", "id": seen}}


def sharing() -> SpoolSharing:
    return SpoolSharing(OURS, Path("/var/spool/mailscan"), probe_every_s=30)


def test_a_pool_whose_probe_sees_another_spool_or_none_stops_the_sharing_once(caplog):
    for seen in ("cd34", None):
        state = sharing()
        with caplog.at_level(logging.WARNING):
            state.follow(
                {"av@mx1": probe("av", seen, 1000), "spam@mx1": probe("spam", OURS, 1000)}, 1010
            )
            state.follow({"av@mx1": probe("av", seen, 1030)}, 1040)
        assert not state.shared
        assert caplog.text.count("the av pool (av@mx1) cannot read big messages") == 1
        assert ("another spool" if seen else "no spool") in caplog.text
        caplog.clear()


def test_probes_that_all_see_the_spool_keep_it_shared():
    state = sharing()
    state.follow({"av@mx1": probe("av", OURS, 1000), "spam@mx1": probe("spam", OURS, 1000)}, 1010)
    assert state.shared


def test_a_probe_from_a_worker_gone_for_three_intervals_says_nothing():
    state = sharing()
    state.follow({"av@old": probe("av", None, 1000)}, 1000 + 3 * 30 + 1)
    assert state.shared


def test_sharing_resumes_once_every_pool_has_probed_since_and_sees_the_spool(caplog):
    state = sharing()
    state.stop("av", "av@mx1", "its job could not read a message")
    stopped = state.stopped_at
    assert stopped is not None
    before = {
        "av@mx1": probe("av", OURS, stopped - 1),
        "spam@mx1": probe("spam", OURS, stopped + 1),
    }
    state.follow(before, stopped + 2)
    assert not state.shared  # the av probe is from before the failure: it proves nothing
    state.follow({}, stopped + 2)
    assert not state.shared  # no probe at all (beat not running): as the job found
    with caplog.at_level(logging.WARNING):
        state.follow({name: {**p, "at": stopped + 5} for name, p in before.items()}, stopped + 6)
    assert state.shared
    assert "big messages reach the pools through it again" in caplog.text
