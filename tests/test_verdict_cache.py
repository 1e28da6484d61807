"""The antivirus verdict cache: identical content is scanned once, and only as long as the
signatures are the same. An engine's calls are counted by the scan metrics, which count
what the engines answered and not what the cache did."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings
from tasks.wire.blobs import content_key
from tasks.wire.keys import METRICS_SCANS_KEY
from tests.conftest import EICAR, make_message, send

pytestmark = pytest.mark.integration


def bulk_copy(rcpt: str, attachment: bytes) -> bytes:
    """One copy of a mailing as a list server fans it out: same body, own headers."""
    message = make_message(body="Quarterly report attached.", attachment=attachment)
    message.set_boundary("mailing-2026-11")
    del message["To"]
    message["To"] = rcpt
    return message.as_bytes().replace(b"\n", b"\r\n")


def test_copies_of_a_bulk_mailing_share_a_key_other_content_does_not():
    first, second = (
        bulk_copy("a@example.test", b"PDF-1.4 x"),
        bulk_copy("b@example.test", b"PDF-1.4 x"),
    )
    other = bulk_copy("a@example.test", b"PDF-1.4 y")
    assert content_key(first) == content_key(second)
    assert content_key(first) != content_key(other)
    # The body read another way is another content.
    reread = first.replace(b"Content-Type: multipart/mixed", b"Content-Type: text/plain", 1)
    assert content_key(reread) != content_key(first)


def calls(client: redis.Redis) -> dict[str, int]:
    """How often each av engine has scanned a message itself, whatever it answered."""
    counted: dict[str, int] = {}
    for field, value in client.hgetall(METRICS_SCANS_KEY).items():
        pool, engine, _ = field.decode().split("|")
        if pool == "av":
            counted[engine] = counted.get(engine, 0) + int(value)
    return counted


def calls_since(client: redis.Redis, before: dict[str, int]) -> dict[str, int]:
    return {engine: n - before.get(engine, 0) for engine, n in calls(client).items()}


def test_a_bulk_mailing_is_scanned_once_and_a_cached_virus_is_still_refused(stack, settings):
    client = redisauth.connect(settings)
    attachment = f"report {id(client)}".encode()
    before = calls(client)
    for n in range(3):
        reply = send(bulk_copy(f"r{n}@example.test", attachment), settings.smtp_port)
        assert reply.code == 250
    # The caching engines scanned the first copy only; the command engine is never cached.
    assert calls_since(client, before) == {"clamav": 1, "builtin": 1, "command": 3}
    before = calls(client)
    for n in range(2):
        reply = send(bulk_copy(f"v{n}@example.test", EICAR), settings.smtp_port)
        assert reply.code == 550
        assert "EICAR" in reply.text
    assert calls_since(client, before) == {"clamav": 1, "builtin": 1, "command": 2}


@pytest.fixture
def updated_rules(stack: Stack, settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """The built-in engine's signatures updated by one rule, and the av pool restarted to
    load them, as an administrator does."""
    rules = tmp_path / "rules"
    shutil.copytree(settings.builtin_rules_dir, rules)
    (rules / "update.yar").write_text(
        'rule Mailscan_Update { strings: $a = "mailscan-update-never-seen" condition: $a }\n'
    )
    worker = stack.services["av-worker"]
    worker.env = {**worker.env, "MAILSCAN_BUILTIN_RULES_DIR": str(rules)}
    stack.restart("av-worker")
    yield stack
    worker.env = {k: v for k, v in worker.env.items() if k != "MAILSCAN_BUILTIN_RULES_DIR"}
    stack.restart("av-worker")


def test_new_signatures_miss_the_cache_of_the_engine_they_belong_to(stack, settings, request):
    client = redisauth.connect(settings)
    attachment = f"update {id(client)}".encode()
    assert send(bulk_copy("u0@example.test", attachment), settings.smtp_port).code == 250
    request.getfixturevalue("updated_rules")
    before = calls(client)
    assert send(bulk_copy("u1@example.test", attachment), settings.smtp_port).code == 250
    # Scanned again by the engine whose signatures changed; the other's answer still holds.
    assert calls_since(client, before) == {"clamav": 0, "builtin": 1, "command": 1}


def test_a_cached_verdict_leaves_no_attempt_counted_against_the_message(stack, settings):
    from tasks.wire.keys import ATTEMPTS_KEY

    client = redisauth.connect(settings)
    attachment = f"attempts {id(client)}".encode()
    ids = []
    for n in range(2):  # the second copy is answered from the cache
        reply = send(bulk_copy(f"c{n}@example.test", attachment), settings.smtp_port)
        assert reply.code == 250
        ids.append(reply.text.rsplit(" as ", 1)[1])
    # The cached copy's attempt was counted with its fetch, before the cache answered, and
    # taken back: a counter absent altogether would say nothing.
    counts = client.hgetall(ATTEMPTS_KEY.format(message=ids[1]))
    assert counts, "no attempt of the cached copy was counted"
    assert {int(value) for value in counts.values()} == {0}, counts
