"""Where alerts come from, each on a Redis of its own: the front's outcomes (a virus, a banned
attachment), its dead letters and corrupt entries, a circuit breaker opening and closing, a
new crash group. Each raises one alert, with the facts an administrator needs and never the
message's body or subject."""

from __future__ import annotations

from pathlib import Path

from mailserver.front.deadletter import DeadLetters
from mailserver.front.handover import Outcome
from mailserver.front.outcomes import OutcomeLog
from mailserver.front.spool import Envelope, SpoolEntry
from tasks.alerts.events import Alert, latest
from tasks.crashes import records as crashdumps
from tasks.crashes.records import Incident
from tasks.crashes.store import CrashStore
from tasks.errors import BackendUnavailable
from tasks.guards import breaker
from tasks.guards.breaker import BreakerGuard
from tasks.wire.spoolfile import QUEUE
from tests.conftest import wait_for

SECRET = b"Subject: the board's secret plans\r\n\r\nThe body nobody else may read.\r\n"


def entry(entry_id: str = "m1") -> SpoolEntry:
    envelope = Envelope("alice@example.test", ("bob@example.test", "carol@example.test"))
    return SpoolEntry(entry_id, envelope, SECRET)


def raised(client) -> list[Alert]:
    return list(reversed(latest(client, 100)))


def test_a_virus_and_a_banned_attachment_raise_an_alert_with_the_envelope(guard_redis):
    guard_redis.flushdb()
    outcomes = OutcomeLog(guard_redis)
    outcomes.add(entry("m1"), Outcome("reject", "550 ...", "virus Eicar-Signature"))
    outcomes.add(entry("m2"), Outcome("quarantine", "250 ...", "banned a.pdf.exe (double ext)"))
    outcomes.add(entry("m3"), Outcome("deliver", "250 ...", "clean"))
    outcomes.add(entry("m4"), Outcome("deliver", "250 ...", "spam, tagged"))
    outcomes.flush()
    virus, banned = raised(guard_redis)
    assert virus.kind == "virus"
    assert virus.facts == {"id": "m1", "virus": "Eicar-Signature", "action": "reject",
                           "sender": "alice@example.test",
                           "recipients": ["bob@example.test", "carol@example.test"]}  # fmt: skip
    assert banned.kind == "banned"
    assert (banned.facts["part"], banned.facts["rule"]) == ("a.pdf.exe", "double ext")
    assert "a.pdf.exe" in banned.summary
    stream = str(guard_redis.xrange("mailscan:alerts"))
    assert "secret" not in stream
    assert "body" not in stream


def test_a_dead_letter_and_a_corrupt_entry_raise_alerts(guard_redis, tmp_path: Path):
    guard_redis.flushdb()
    outcomes = OutcomeLog(guard_redis)
    dead = DeadLetters(tmp_path, outcomes.alert)
    for name in ("m1", "m2"):
        (tmp_path / QUEUE / name).parent.mkdir(exist_ok=True)
        (tmp_path / QUEUE / name).write_bytes(SECRET)
    envelope = {"mail_from": "alice@example.test", "rcpt_tos": ["bob@example.test"]}
    dead.bury("m1", {"reason": "550 5.1.1 no such user", "envelope": envelope})
    dead.set_aside("m2", "the envelope cannot be read")
    outcomes.flush()
    letter, corrupt = raised(guard_redis)
    assert letter.kind == "dead-letter"
    assert letter.facts == {
        "id": "m1", "reason": "550 5.1.1 no such user", "sender": "alice@example.test",
        "recipients": ["bob@example.test"],
    }  # fmt: skip
    assert (corrupt.kind, corrupt.facts["id"]) == ("spool-alarm", "m2")
    assert "secret" not in str(guard_redis.xrange("mailscan:alerts"))


def test_a_breaker_announces_its_opening_once_and_its_closing_once(pool_process):
    engine = pool_process.start("av", BreakerGuard(), breaker_failures=2, breaker_cooldown_s=0.3)
    engine.fails_with, engine.healthy = BackendUnavailable, False
    for _ in range(2):
        pool_process.scan()
    wait_for(lambda: not pool_process.redis.exists("mailscan:breaker:stub:open"), 5, "cooldown")
    for _ in range(2):  # still down after the cooldown: the same outage, not a new one
        pool_process.scan()
    breaker.close(pool_process.redis, "stub")  # the health probe finds it back
    breaker.close(pool_process.redis, "stub")
    kinds = [(a.kind, a.facts.get("plugin")) for a in raised(pool_process.redis)]
    assert kinds == [("breaker-opened", "stub"), ("breaker-closed", "stub")]
    assert raised(pool_process.redis)[0].facts["failures"] == 2


def test_only_the_first_incident_of_a_signature_raises_a_crash_group_alert(guard_redis, tmp_path):
    guard_redis.flushdb()
    store = CrashStore(guard_redis, tmp_path)
    first = crashdumps.record(Incident("crash", "av", {"name": "engine"}, "job-1", {"blob": "b"}))
    again = crashdumps.record(Incident("crash", "av", {"name": "engine"}, "job-2", {"blob": "c"}))
    assert [store.save(first), store.save(again)] == ["redis", "counted"]
    [alert] = raised(guard_redis)
    assert alert.kind == "crash-group"
    assert alert.facts["plugin"] == "engine"
    assert alert.facts["crashdump"] == first["id"]
    assert alert.facts["signature"] == first["signature"]
