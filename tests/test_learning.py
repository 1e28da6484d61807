"""Learning from mistakes, against a real spamd of a stack of its own (its Bayes starts
empty, learns nothing by itself, and is used after 10 messages of each class instead of
200): ``mailscan learn`` teaches it through the spam pool, the Bayes database counts what
was learnt (``sa-learn --dump magic``), and a message's score moves once Bayes knows it."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from mailserver.front.outcomes import message_id_of
from mailserver.front.quarantine import Quarantine
from mailserver.front.spool import Envelope, SpoolEntry, new_id
from mailserver.messagelog.record import MessageRecord, RecipientOutcome
from mailserver.messagelog.store import MessageStore
from mailserver.supervisor.services import spamd_home
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.crashes.reports import audit_log
from tasks.plugins.spamassassin import SpamassassinPlugin
from tasks.plugins.truncation import truncate
from tasks.settings import Settings, load_settings
from tasks.wire.keys import SPAM_POOL
from tests.conftest import CORPUS, maildir_messages, make_message, on_the_wire, port, stack_env
from tests.console_session import ADMIN, PASSWORD, add_admin, csrf_token, logged_in
from tests.test_console_browser import CHROMIUM_ARGS

pytestmark = pytest.mark.integration
OFFSET = 21  # ports of a stack of its own (tests/conftest.py stack_env)
CONSOLE_PORT = port(18041)
LEARN_SETTINGS = {
    "spamd_config": "bayes_min_spam_num 10; bayes_min_ham_num 10; bayes_auto_learn 0",
    "console_port": str(CONSOLE_PORT),
    "max_message_bytes": "2000000",  # the cap of what is learnt, small enough to upload past
}
# A ham, and a spam that Bayes trained on the rest finds neutral (it scores under 5).
HAM_TARGET = CORPUS / "nice" / "005.eml"
SPAM_TARGET = CORPUS / "spam" / "olevbmacro_target_uri.eml.eml"
TRAIN_HAM = [p for p in sorted((CORPUS / "nice").glob("0*.eml")) if p != HAM_TARGET]
TRAIN_SPAM = [p for p in sorted((CORPUS / "spam").glob("0*.eml")) if p != SPAM_TARGET]
MAGIC = re.compile(r"^\S+\s+\S+\s+(\d+)\s+\S+\s+non-token data: (nspam|nham|ntokens)$", re.M)


@pytest.fixture(scope="module")
def learn_env() -> Iterator[dict[str, str]]:
    """Its var folder outside the run's folder (which only root may enter): spamd's children
    run as nobody and must reach their home to write Bayes."""
    var = Path(tempfile.mkdtemp(prefix="mailscan-learning-"))
    var.chmod(0o711)  # enter, not list
    env = stack_env("learning", OFFSET, **LEARN_SETTINGS)
    env["MAILSCAN_VAR_DIR"] = str(var)
    env["MAILSCAN_REDIS_PASSWORD_FILE"] = str(var / "redis" / "password")
    yield env
    if not os.environ.get("KEEP_TEST_VAR"):
        shutil.rmtree(var, ignore_errors=True)


@pytest.fixture(scope="module")
def ls(learn_env) -> Settings:
    return load_settings(learn_env)


@pytest.fixture(scope="module")
def learner(ls, learn_env) -> Iterator[Stack]:
    """Redis, spamd and the spam pool: all that learning needs (and the console, later)."""
    running = Stack(ls, learn_env)
    try:
        running.start(["redis", "spamd", "spam-worker"], progress=lambda _: None)
        yield running
    finally:
        running.stop()


def bayes(settings: Settings) -> dict[str, int]:
    """What spamd's Bayes database holds: messages learnt as spam and ham, and tokens."""
    done = subprocess.run(
        ["sa-learn", "--dump", "magic", f"--dbpath={spamd_home(settings)}/bayes"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    counts = {name: int(value) for value, name in MAGIC.findall(done.stdout)}
    return {"nspam": 0, "nham": 0, "ntokens": 0} | counts


def mailscan(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailserver.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)  # fmt: skip


def scored(settings: Settings, path: Path) -> tuple[float, list[str]]:
    verdict = SpamassassinPlugin(settings=settings, pool=SPAM_POOL).scan(path.read_bytes())
    return verdict.score or 0.0, list(verdict.rules)


def quarantined(settings: Settings, content: bytes) -> str:
    envelope = Envelope("carol@example.test", ("dave@example.test",), "192.0.2.7", "client.test")
    entry = SpoolEntry(new_id(), envelope, content)
    Quarantine(settings.quarantine_dir).put(entry, content, "spam score 6.1", {})
    return entry.id


def test_spamd_is_started_to_learn_from_loopback_only(ls):
    from mailserver.supervisor.services import all_services

    argv = next(s for s in all_services(ls) if s.name == "spamd").argv
    assert "--allow-tell" in argv
    assert "--allowed-ips=127.0.0.1,::1" in argv
    assert "--cf=bayes_min_spam_num 10" in argv


def test_learning_from_files_fills_bayes_and_moves_the_scores(learner, ls, learn_env):
    assert not bayes_rules(scored(ls, HAM_TARGET)[1])  # Bayes waits for 10 of each class
    before = bayes(ls)
    spam_said = learnt(mailscan(learn_env, "learn", "spam", *map(str, TRAIN_SPAM)))
    ham_said = learnt(mailscan(learn_env, "learn", "ham", *map(str, TRAIN_HAM)))
    after = bayes(ls)
    assert after["nspam"] - before["nspam"] == list(spam_said.values()).count("learnt as spam")
    assert after["nham"] - before["nham"] == list(ham_said.values()).count("learnt as ham")
    assert min(after["nspam"], after["nham"]) >= 10
    assert after["ntokens"] > before["ntokens"]

    # Bayes in use: each target scored, learnt, scored again.
    ham_before = scored(ls, HAM_TARGET)[0]
    spam_before, spam_rules_before = scored(ls, SPAM_TARGET)
    assert learnt(mailscan(learn_env, "learn", "ham", str(HAM_TARGET))) == {
        str(HAM_TARGET): "learnt as ham"
    }
    assert learnt(mailscan(learn_env, "learn", "spam", str(SPAM_TARGET))) == {
        str(SPAM_TARGET): "learnt as spam"
    }
    ham_after, ham_rules = scored(ls, HAM_TARGET)
    spam_after, spam_rules = scored(ls, SPAM_TARGET)
    assert bayes_rules(ham_rules) == ["BAYES_00"]
    assert ham_after < ham_before
    assert bayes_rules(spam_rules) != bayes_rules(spam_rules_before)
    assert spam_after > spam_before


def bayes_rules(rules: list[str]) -> list[str]:
    return [r for r in rules if r.startswith("BAYES_")]


def learnt(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """What ``mailscan learn`` said of each file."""
    assert done.returncode == 0, done.stderr
    return dict(line.rsplit(": ", 1) for line in done.stdout.splitlines())


def test_learning_the_same_again_says_it_was_not_new(learner, ls, learn_env):
    first = mailscan(learn_env, "learn", "spam", str(TRAIN_SPAM[0]))
    before = bayes(ls)
    again = mailscan(learn_env, "learn", "spam", str(TRAIN_SPAM[0]))
    assert first.returncode == again.returncode == 0, again.stderr
    assert "not new to spamd as spam" in again.stdout
    assert bayes(ls)["nspam"] == before["nspam"]


def test_quarantine_ids_are_released_as_ham_and_deleted_as_spam(learner, ls, learn_env):
    ham_id = quarantined(ls, (CORPUS / "nice" / "mime1.eml").read_bytes())
    spam_id = quarantined(ls, (CORPUS / "spam" / "bsmtp.eml").read_bytes())
    delivered, before = len(maildir_messages(ls.maildir)), bayes(ls)

    taught = mailscan(learn_env, "learn", "ham", ham_id)
    assert taught.returncode == 0, taught.stderr
    assert "released and delivered" in taught.stdout
    taught = mailscan(learn_env, "learn", "spam", spam_id)
    assert taught.returncode == 0, taught.stderr

    after = bayes(ls)
    assert (after["nham"], after["nspam"]) == (before["nham"] + 1, before["nspam"] + 1)
    assert len(maildir_messages(ls.maildir)) == delivered + 1
    assert not list(ls.quarantine_dir.glob(f"{ham_id}.*"))
    assert not list(ls.quarantine_dir.glob(f"{spam_id}.*"))
    audit = audit_log(redisauth.connect(ls))
    assert [(e["action"], e["message"]) for e in audit[:2]] == [
        ("quarantine spam confirmed: learnt as spam, deleted", spam_id),
        ("quarantine not spam: learnt as ham, released", ham_id),
    ]
    assert audit[0]["by"].endswith("(terminal)")


def test_an_unknown_id_or_file_is_one_clear_line(learner, learn_env):
    unknown = mailscan(learn_env, "learn", "ham", "0" * 24)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == f"mailscan: {'0' * 24}: no such message in the quarantine"
    missing = mailscan(learn_env, "learn", "spam", "no-such.eml")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert "no-such.eml: No such file or directory" in missing.stderr


def large_spam(size: int) -> bytes:
    """A new spam of at least ``size`` bytes: a short text, then a large attachment."""
    text, filler = f"Cheap pills, order today ({time.time_ns()}).", random.randbytes(size)
    return on_the_wire(make_message(body=text, attachment=filler))


def test_a_large_file_is_learnt_as_the_head_a_scan_sees_and_one_past_the_cap_is_not(
    learner, ls, learn_env, tmp_path
):
    message, large, huge = large_spam(ls.spam_max_bytes), tmp_path / "l.eml", tmp_path / "h.eml"
    large.write_bytes(message)
    huge.write_bytes(b"x" * 2_000_001)
    head, before = truncate(message, ls.spam_max_bytes), bayes(ls)
    said = f"learnt as spam (first {len(head)} of {len(message)} bytes, as scanned)"
    assert learnt(mailscan(learn_env, "learn", "spam", str(large))) == {str(large): said}
    assert bayes(ls)["nspam"] == before["nspam"] + 1
    refused = mailscan(learn_env, "learn", "spam", str(huge))
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"mailscan: {huge}: the file is larger than the mail mailscan accepts (2000001 bytes, "
        "MAILSCAN_MAX_MESSAGE_BYTES=2000000): nothing to learn"
    )


@pytest.fixture(scope="module")
def console(learner, learn_env) -> str:
    learner.start(["console"], progress=lambda _: None)
    add_admin(learn_env)
    return f"http://127.0.0.1:{CONSOLE_PORT}"


@pytest.fixture(scope="module")
def browser(console) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                              args=CHROMIUM_ARGS)  # fmt: skip
        yield chromium
        chromium.close()


def test_release_and_learn_and_confirm_spam_in_the_console(browser, console, ls):
    ham_id = quarantined(ls, (CORPUS / "nice" / "mime4.eml").read_bytes())
    spam_id = quarantined(ls, (CORPUS / "spam" / "freemail1.eml").read_bytes())
    delivered, before = len(maildir_messages(ls.maildir)), bayes(ls)
    page = browser.new_context().new_page()
    page.goto(f"{console}/quarantine")
    page.fill("input[name=name]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")

    page.goto(f"{console}/quarantine/{ham_id}")
    page.click("button:has-text('Not spam: release')")
    expect(page.locator(".flash")).to_contain_text("learnt as ham, released and delivered")
    page.goto(f"{console}/quarantine/{spam_id}")
    page.click("button:has-text('Spam: confirm')")
    expect(page.locator(".flash")).to_contain_text("learnt as spam and deleted")
    expect(page.locator(f"a[href='/quarantine/{spam_id}']")).to_have_count(0)  # gone

    after = bayes(ls)
    assert (after["nham"], after["nspam"]) == (before["nham"] + 1, before["nspam"] + 1)
    assert len(maildir_messages(ls.maildir)) == delivered + 1
    page.goto(f"{console}/audit")
    rows = page.locator("table.audit tbody tr")
    expect(rows.nth(0)).to_contain_text("quarantine spam confirmed: learnt as spam, deleted")
    expect(rows.nth(0)).to_contain_text(spam_id)
    expect(rows.nth(1)).to_contain_text("quarantine not spam: learnt as ham, released")
    expect(rows.nth(1)).to_contain_text(ADMIN)


def delivered(ls: Settings, message: bytes) -> str:
    """A delivered message in the message log, as the front records it; its spool id."""
    spool_id, outcome = new_id(), RecipientOutcome("dave@example.test", "delivered")
    record = MessageRecord(at=time.time(), spool_id=spool_id, mail_from="carol@example.test",
                           recipients=(outcome,), verdict="clean", action="deliver",
                           reason="clean", message_id=message_id_of(message))  # fmt: skip
    MessageStore.from_settings(ls).insert([record])
    return spool_id


def uploaded(admin: httpx.Client, spool_id: str, copy: bytes) -> str:
    """ "Spam: confirm" on the message's page with ``copy``; the page it comes back to."""
    token = {"csrf_token": csrf_token(admin.get(f"/messages/{spool_id}").text)}
    files = {"message": ("copy.eml", copy, "message/rfc822")}
    return admin.post(f"/messages/{spool_id}/spam", data=token, files=files).text


def test_the_console_learns_a_large_delivered_copy_and_refuses_one_past_the_cap(console, ls):
    message = large_spam(ls.spam_max_bytes)
    spool_id, head = delivered(ls, message), truncate(message, ls.spam_max_bytes)
    admin = logged_in(console)
    page = uploaded(admin, spool_id, message + b"x" * (2_000_001 - len(message)))
    assert "Nothing done: spamd did not learn it: the file is larger than the mail" in page
    assert "MAILSCAN_MAX_MESSAGE_BYTES=2000000" in page
    page = uploaded(admin, spool_id, message)
    admin.close()
    said = f"learnt as spam (first {len(head)} of {len(message)} bytes, as scanned)"
    assert f"Message {spool_id} {said}." in page
