"""Failure policies end to end, on the fault stack: a failing av plugin under the
``quarantine`` and ``backup-engine`` policies, and a poison message in post-queue mode, each
seen where the administrator or the recipient would see it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from mailserver.supervisor.stack import Stack
from tasks.plugins.chaos import marker
from tasks.settings import Settings, load_settings
from tests.conftest import find_delivered, make_message, port, send, wait_for

pytestmark = pytest.mark.integration


def front(fs: Settings, fault_env: dict[str, str], name: str, shift: int, **env: str):
    """An SMTP front of its own on the fault stack's Redis and pools."""
    env = {**fault_env, **{f"MAILSCAN_{k.upper()}": v for k, v in env.items()},
           "MAILSCAN_SMTP_PORT": str(fs.smtp_port + shift),
           "MAILSCAN_METRICS_PORT": str(port(19137) + shift),
           "MAILSCAN_VAR_DIR": str(fs.var_dir / name)}  # fmt: skip
    stack = Stack(load_settings(env), env)
    stack.start(["mailserver"], progress=lambda _: None)
    return stack


@pytest.fixture
def quarantining_front(faults, fs, fault_env) -> Iterator[Settings]:
    stack = front(fs, fault_env, "quarantine-front", 3, av_failure_policy="quarantine")
    yield stack.settings
    stack.stop()


@pytest.fixture
def post_queue_front(faults, fs, fault_env) -> Iterator[Settings]:
    stack = front(fs, fault_env, "post-queue-front", 4, mode="post-queue")
    yield stack.settings
    stack.stop()


@pytest.fixture
def backup_engine(faults, fs, fault_env) -> Iterator[Settings]:
    """The av pool and a front with the backup-engine policy: the built-in engine scans
    when the main engines cannot answer."""
    policy = {"MAILSCAN_AV_FAILURE_POLICY": "backup-engine",
              "MAILSCAN_AV_BACKUP_PLUGINS": "builtin"}  # fmt: skip
    worker = faults.services["av-worker"]
    worker.env = {**worker.env, **policy}
    faults.restart("av-worker")
    stack = front(fs, fault_env, "backup-front", 5, av_failure_policy="backup-engine",
                  av_backup_plugins="builtin")  # fmt: skip
    yield stack.settings
    stack.stop()
    worker.env = {k: v for k, v in worker.env.items() if k not in policy}
    faults.restart("av-worker")


def failing_scan(test_id: str, action: str = "raise"):
    return make_message(body=f"Look: {marker(action).decode()} thanks.", X_Test_Id=test_id)


def quarantined(settings: Settings, test_id: str) -> tuple[dict, bytes]:
    folder = settings.quarantine_dir

    def held() -> list:
        return [
            p for p in folder.glob("*.eml") if f"X-Test-Id: {test_id}".encode() in p.read_bytes()
        ]

    wait_for(lambda: held(), 90, f"{test_id} in the quarantine")
    [kept] = held()
    return json.loads(kept.with_suffix(".json").read_text()), kept.read_bytes()


def test_a_failing_av_plugin_under_quarantine_holds_the_message(quarantining_front):
    settings = quarantining_front
    reply = send(failing_scan("policy-quarantine"), settings.smtp_port)
    assert reply.code == 250
    assert "quarantined" in reply.text
    meta, held = quarantined(settings, "policy-quarantine")
    assert meta["reason"] == "virus scan failed"
    assert b"X-Virus-Status: Unknown" in held
    assert b"chaos=error" in held
    assert find_delivered(settings.maildir, b"policy-quarantine") == []


def test_a_failing_av_plugin_under_backup_engine_is_scanned_by_the_backup(backup_engine):
    settings = backup_engine
    reply = send(failing_scan("policy-backup"), settings.smtp_port)
    assert reply.code == 250, reply
    [delivered] = find_delivered(settings.maildir, b"policy-backup")
    assert b"X-Virus-Scanned: mailscan; chaos=error clamav=clean builtin=clean" in delivered
    assert b"X-Virus-Status: Clean" in delivered


def test_a_poison_message_in_post_queue_mode_ends_quarantined_as_unscannable(
    post_queue_front, faults, fs
):
    settings = post_queue_front
    assert send(failing_scan("policy-poison", "segfault"), settings.smtp_port).code == 250
    meta, held = quarantined(settings, "policy-poison")
    assert meta["reason"] == "unscannable"
    assert meta["verdicts"]["av"]["unscannable"] is True
    assert b"X-Virus-Status: Unknown" in held
    wait_for(lambda: not any((settings.spool_dir / "queue").iterdir()), 20, "an empty spool")
    assert find_delivered(settings.maildir, b"policy-poison") == []
