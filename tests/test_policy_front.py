"""The policy file over real SMTP: a front of its own (with a policy file) on the session's
Redis, pools and spamd. Recipients under different policies get different outcomes for one
message; ``mailscan reload`` under a stream of mail changes the outcome of new mail and
refuses none; a broken file is refused while the policy in force stays."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver.supervisor.stack import Stack
from tasks.settings import Settings, load_settings
from tests.conftest import (
    GTUBE,
    find_delivered,
    mailscan,
    make_message,
    port,
    send,
    stack_env,
    wait_for,
)

pytestmark = pytest.mark.integration

SMTP_PORT = port(12525) + 120
STRICT = '[domain."strict.test"]\nspam_quarantine_score = 5\n'
BASE = '[default]\nsubject_tag = "[SPAM]"\n\n'


@pytest.fixture(scope="module")
def policy_env(stack) -> dict[str, str]:
    env = stack_env("policy", 0, smtp_port=str(SMTP_PORT), metrics_port=str(SMTP_PORT + 7000))
    path = Path(env["MAILSCAN_VAR_DIR"]) / "policy.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BASE + STRICT)
    return {**env, "MAILSCAN_POLICY_FILE": str(path)}


@pytest.fixture(scope="module")
def front(policy_env) -> Iterator[Settings]:
    running = Stack(load_settings(policy_env), policy_env)
    try:
        running.start(["mailserver"], progress=lambda _: None)
        yield running.settings
    finally:
        running.stop()


def spam(marker: str) -> bytes:
    # Unique, so no verdict is answered from the cache.
    return make_message(body=f"{GTUBE}\n{marker} {time.time_ns()}", X_Test_Id=marker,
                        subject="Offer").as_bytes()  # fmt: skip


def quarantined(settings: Settings, marker: str) -> list[Path]:
    return [p for p in settings.quarantine_dir.glob("*.eml") if marker.encode() in p.read_bytes()]


def test_two_domains_with_different_spam_scores_get_different_outcomes(front, policy_env):
    reply = send(spam("policy-split"), front.smtp_port, ["ann@strict.test", "bob@other.test"])
    assert reply.code == 250
    assert reply.text.startswith("2.0.0 Ok: 1 quarantined; 1 delivered"), reply.text
    delivered = find_delivered(front.maildir, b"policy-split")
    assert len(delivered) == 1
    assert b"Subject: [SPAM] Offer" in delivered[0]
    held = quarantined(front, "policy-split")
    assert len(held) == 1
    record = held[0].with_suffix(".json").read_text()
    assert '"ann@strict.test"' in record
    assert "bob@other.test" not in record
    logged = logged_record(policy_env, reply.text.rsplit(" ", 1)[1])
    assert {r["address"]: (r["outcome"], r["detail"]) for r in logged["recipients"]} == {
        "ann@strict.test": ("quarantined", "domain strict.test: spam_quarantine_score 5"),
        "bob@other.test": ("delivered", "spam: tagged (subject too)"),
    }


def logged_record(env: dict[str, str], spool_id: str) -> dict:
    """The message log's record, once the front's writer has put it there."""
    shown: list[subprocess.CompletedProcess] = []

    def found() -> bool:
        shown.append(mailscan("messages", "show", spool_id, "--json", env=env))
        return shown[-1].returncode == 0

    wait_for(found, 30, f"{spool_id} in the message log")
    return json.loads(shown[-1].stdout)


class Stream:
    """One sender sending spam to a domain without rules of its own, until stopped: what
    each message was answered and when its sending started."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.sent = settings, []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.is_set():
            marker, started = f"policy-stream-{len(self.sent)}", time.monotonic()
            reply = send(spam(marker), self.settings.smtp_port, ["carl@later.test"])
            self.sent.append((marker, started, reply.code))

    def __enter__(self) -> Stream:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join(60)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while len(self.sent) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.sent) >= count, self.sent


def test_a_reload_under_a_stream_changes_new_mail_and_refuses_none(front, policy_env):
    policy = front.policy_file
    with Stream(front) as stream:
        stream.wait_for(3)
        policy.write_text(BASE + STRICT + '[domain."later.test"]\nspam_quarantine_score = 5\n')
        reloading = time.monotonic()
        done = mailscan("reload", env=policy_env)
        reloaded = time.monotonic()
        assert done.returncode == 0, done.stderr
        assert "reloaded its policy" in done.stdout
        stream.wait_for(len(stream.sent) + 3)
    assert {code for _, _, code in stream.sent} == {250}
    before = [m for m, started, _ in stream.sent if started < reloading]
    after = [m for m, started, _ in stream.sent if started > reloaded]
    assert before
    assert after
    for marker in before[:-1]:  # the last may have been judged after the switch
        assert find_delivered(front.maildir, marker.encode()), marker
    for marker in after:
        assert quarantined(front, marker), marker
        assert not find_delivered(front.maildir, marker.encode()), marker


def test_a_broken_policy_file_is_refused_and_the_policy_in_force_stays(front, policy_env):
    policy = front.policy_file
    policy.write_text(BASE + '[domain."later.test"]\nspam_quarantine_score = 5\n')
    assert mailscan("reload", env=policy_env).returncode == 0
    policy.write_text(BASE + '[domain."later.test"]\nspam_quarantine_score = "five"\n')
    refused = mailscan("reload", env=policy_env)
    assert refused.returncode == 2
    assert 'line 5: [domain."later.test"] spam_quarantine_score: must be a number' in refused.stderr
    reply = send(spam("policy-kept"), front.smtp_port, ["carl@later.test"])
    assert reply.code == 250
    assert quarantined(front, "policy-kept"), "the policy in force before the broken file"
