"""The alerts' rate limit and digest (tasks/alerts/ratelimit.py), what an alert may carry
(tasks/alerts/events.py) and the pause between retries (tasks/alerts/dispatch.py)."""

from __future__ import annotations

import json

from tasks.alerts.dispatch import LONGEST_WAIT_S, retry_wait_s
from tasks.alerts.events import Alert, kept_facts
from tasks.alerts.ratelimit import SAMPLES, Notice, RateLimiter, Window

EVERY_S = 300.0


def virus(n: int, kind: str = "virus") -> Alert:
    return Alert(kind, f"virus Eicar-{n} in m{n}", 1000.0 + n, {"id": f"m{n}", "virus": "Eicar"})


def test_the_first_alert_of_a_kind_goes_out_at_once_with_its_facts():
    limiter = RateLimiter(EVERY_S)
    notice = limiter.admit(virus(1), now=1000.0)
    assert notice is not None
    assert notice.payload["digest"] is False
    assert notice.payload["kind"] == "virus"
    assert notice.payload["facts"] == {"id": "m1", "virus": "Eicar"}
    assert "virus Eicar-1 in m1" in notice.subject
    assert "virus: Eicar" in notice.text


def test_a_burst_gives_one_alert_then_one_digest_counting_the_rest():
    limiter = RateLimiter(EVERY_S)
    sent = [limiter.admit(virus(n), now=1000.0 + n) for n in range(12)]
    assert [n is not None for n in sent].count(True) == 1
    assert limiter.close_windows(now=1000.0 + EVERY_S - 1) == []  # the window still runs
    digests = limiter.close_windows(now=1000.0 + EVERY_S)
    assert len(digests) == 1
    assert digests[0].payload["count"] == 11
    assert digests[0].payload["summary"].startswith("11 more virus alerts: virus Eicar-1 in m1")
    assert len(digests[0].payload["samples"]) == SAMPLES
    assert "11 more virus alerts" in digests[0].subject


def test_a_flood_gives_one_notice_per_window_and_a_quiet_window_ends_it():
    limiter = RateLimiter(EVERY_S)
    assert limiter.admit(virus(0), now=0.0) is not None
    assert limiter.admit(virus(1), now=10.0) is None
    assert len(limiter.close_windows(now=EVERY_S)) == 1
    # The digest opened the next window: what comes in it waits for the next digest.
    assert limiter.admit(virus(2), now=EVERY_S + 1) is None
    assert [d.payload["count"] for d in limiter.close_windows(now=2 * EVERY_S)] == [1]
    assert limiter.close_windows(now=3 * EVERY_S) == []  # nothing held: the window ends
    assert limiter.windows == {}
    assert limiter.admit(virus(3), now=3 * EVERY_S + 1) is not None


def test_each_kind_has_its_own_window():
    limiter = RateLimiter(EVERY_S)
    assert limiter.admit(virus(1), now=0.0) is not None
    assert limiter.admit(virus(2, kind="banned"), now=1.0) is not None
    assert limiter.admit(virus(3), now=2.0) is None


def test_one_held_alert_is_named_in_the_singular():
    limiter = RateLimiter(EVERY_S)
    limiter.admit(virus(1), now=0.0)
    limiter.admit(virus(2), now=1.0)
    (digest,) = limiter.close_windows(now=EVERY_S)
    assert digest.payload["summary"] == "1 more virus alert: virus Eicar-2 in m2"


def test_windows_and_notices_survive_their_trip_through_redis_as_json():
    limiter = RateLimiter(EVERY_S)
    notice = limiter.admit(virus(1), now=0.0)
    limiter.admit(virus(2), now=1.0)
    stored = {k: json.loads(json.dumps(w.to_json())) for k, w in limiter.windows.items()}
    again = RateLimiter(EVERY_S, {k: Window.from_json(v) for k, v in stored.items()})
    assert again.close_windows(now=EVERY_S)[0].payload["count"] == 1
    assert Notice.from_json(json.loads(json.dumps(notice.to_json()))) == notice


def test_an_alert_keeps_only_the_envelope_and_names_never_a_body_or_subject():
    facts = kept_facts({
        "id": "m1", "virus": "Eicar", "sender": "alice@example.test",
        "recipients": [f"r{n}@example.test" for n in range(50)],
        "body": "the secret body", "subject": "the secret subject", "part": "x" * 1000,
    })  # fmt: skip
    assert "body" not in facts
    assert "subject" not in facts
    assert len(facts["recipients"]) == 10
    assert len(facts["part"]) == 200


def test_a_failed_send_waits_twice_as_long_each_time_up_to_a_bound():
    waits = [retry_wait_s(n, 5.0) for n in range(1, 12)]
    assert waits[:4] == [5.0, 10.0, 20.0, 40.0]
    assert max(waits) == LONGEST_WAIT_S
