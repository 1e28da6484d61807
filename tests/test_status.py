"""``mailscan status`` as an operator reads it, from reports as the workers store them, and
the spool's name that the pools' health probes compare."""

from beat.tasks import _dead_letters
from mailserver.cli.status import status_lines
from mailserver.front.spool import Spool
from tasks.wire.spoolfile import spool_id

NOW = 1_000_000.0


def report(probe_spool_id: str | None, front_at: float = NOW - 1, ok: bool = True) -> dict:
    clamav = {"ok": True, "version": "ClamAV 1.4"} if ok else {"ok": False, "error": "refused"}
    probe = {
        "pool": "av",
        "worker": "av@mx1",
        "at": NOW - 12,
        "plugins": {"clamav": clamav},
        "spool": {"dir": "/var/spool/mailscan", "id": probe_spool_id},
    }
    return {
        "redis": {"url": "redis://127.0.0.1:6379/0", "primary": "127.0.0.1:6379", "replicas": []},
        "fronts": {"mx1": {"spool_id": "ab12", "spool_shared": True, "count": 3, "at": front_at}},
        "pools": {"av": {"queue_depth": 0, "workers": {}, "probes": {"av@mx1": probe}}},
    }


def test_a_pool_that_sees_the_fronts_spool():
    lines = status_lines(report("ab12"), now=NOW)
    front = "SMTP front mx1: spool ab12, 3 message(s) without an outcome"
    assert f"{front}, big messages to the pools through the spool" in lines
    assert "  av@mx1: health probe 12 s ago: clamav ClamAV 1.4" in lines
    assert "    reads big messages from the spool of mx1 at /var/spool/mailscan" in lines


def test_a_pool_with_another_spool_or_none_is_named_with_the_front_it_does_not_see():
    for seen in ("cd34", None):
        text = "\n".join(status_lines(report(seen), now=NOW))
        assert "does not see the spool of mx1 at /var/spool/mailscan" in text
        assert "reach it through Redis" in text


def test_a_pool_that_sees_one_fronts_spool_and_not_anothers_names_both():
    state = report("ab12")
    state["fronts"]["mx2"] = {"spool_id": "ef56", "spool_shared": True, "count": 0, "at": NOW}
    lines = status_lines(state, now=NOW)
    assert "    reads big messages from the spool of mx1 at /var/spool/mailscan" in lines
    assert any(line.startswith("    does not see the spool of mx2 at") for line in lines)


def test_a_front_that_stopped_long_ago_is_not_held_against_the_pools():
    text = "\n".join(status_lines(report("cd34", front_at=NOW - 3600), now=NOW))
    assert "does not see" not in text
    assert "reads big messages" not in text


def test_a_probe_from_before_probes_named_the_spool_says_nothing_of_it():
    old = report("ab12")
    del old["pools"]["av"]["probes"]["av@mx1"]["spool"]
    text = "\n".join(status_lines(old, now=NOW))
    assert "av@mx1: health probe 12 s ago" in text
    assert "spool at" not in text


def test_a_failing_engine_says_why():
    assert "clamav failing (refused)" in "\n".join(status_lines(report("ab12", ok=False), now=NOW))


def test_a_spool_is_named_once_and_keeps_its_name(tmp_path):
    assert spool_id(tmp_path) is None  # a pool's folder that is not the front's spool
    first = Spool(tmp_path).id
    assert first
    assert Spool(tmp_path).id == first == spool_id(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("spool-id")] == ["spool-id"]


def test_a_fronts_verdict_subscriber_is_said_up_or_down():
    up, down = report("ab12"), report("ab12")
    up["fronts"]["mx1"]["verdict_subscriber"] = True
    down["fronts"]["mx1"]["verdict_subscriber"] = False
    assert "  verdict subscriber up" in status_lines(up, now=NOW)
    down_line = "  verdict subscriber down: its messages wait their whole deadline"
    assert down_line in status_lines(down, now=NOW)
    assert "verdict subscriber" not in "\n".join(status_lines(report("ab12"), now=NOW))


def test_a_front_with_dead_letters_or_corrupt_entries_shows_an_alarm():
    status = report("ab12")
    status["fronts"]["mx1"] |= {"dead": 2, "corrupt": 1, "spool_dir": "/var/spool/mailscan"}
    lines = status_lines(status, now=NOW)
    assert (
        "  ALARM: 2 message(s) dead-lettered in /var/spool/mailscan/dead, "
        "1 unreadable entr(ies) set aside in /var/spool/mailscan/corrupt"
    ) in lines
    assert not any("ALARM" in line for line in status_lines(report("ab12"), now=NOW))


def test_beat_keeps_the_alarm_while_a_front_has_dead_letters():
    assert _dead_letters("mx1", {"dead": 0, "corrupt": 0}) is None
    assert _dead_letters("mx1", {"dead": 1, "corrupt": 0}) == (
        "mx1: 1 dead-lettered and 0 corrupt spool entries to look at"
    )


def test_redis_under_sentinel_names_its_primary_replicas_and_sentinels():
    under_sentinel = report("ab12")
    under_sentinel["redis"] = {
        "url": "redis://127.0.0.1:6390/0", "primary": "127.0.0.1:6391",
        "replicas": ["127.0.0.1:6390"], "sentinels": ["127.0.0.1:26390", "127.0.0.1:26391"],
        "master_name": "mailscan",
    }  # fmt: skip
    assert status_lines(under_sentinel, now=NOW)[0] == (
        "redis redis://127.0.0.1:6390/0: primary 127.0.0.1:6391, replicas 127.0.0.1:6390 "
        "(sentinels 127.0.0.1:26390, 127.0.0.1:26391, primary named mailscan)"
    )
    assert status_lines(report("ab12"), now=NOW)[0].endswith(
        "primary 127.0.0.1:6379, replicas none"
    )
