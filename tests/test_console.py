"""The admin console over real HTTP, started as ``mailscan up`` starts it, on the session's
Redis and pools: login, the dashboard's record of real mail, the quarantine, the terminal
assist, and the security a person relies on (sessions, CSRF, ids that try to escape)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailserver.front.quarantine import Quarantine
from mailserver.front.spool import Envelope, SpoolEntry, new_id
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.alerts.events import raise_alert
from tasks.crashes import records as crashdumps
from tasks.crashes.store import CrashStore
from tasks.settings import Settings, load_settings
from tasks.wire.keys import ALARMS_KEY
from tests.conftest import find_delivered, make_message, port, send, wait_for
from tests.console_session import ADMIN, PASSWORD, add_admin, console_only, csrf_token, logged_in

pytestmark = pytest.mark.integration
CONSOLE_PORT = port(18026)
BASE = f"http://127.0.0.1:{CONSOLE_PORT}"


@pytest.fixture(scope="module")
def console_env(stack) -> dict[str, str]:
    return {**os.environ, "MAILSCAN_CONSOLE_PORT": str(CONSOLE_PORT)}


@pytest.fixture(scope="module")
def cs(console_env) -> Settings:
    return load_settings(console_env)


@pytest.fixture(scope="module")
def console(cs, console_env) -> Iterator[Stack]:
    with console_only(console_env) as running:
        yield running


@pytest.fixture
def admin(console, console_env, cs) -> httpx.Client:
    if not cs.console_users_file.exists():
        add_admin(console_env)
    client = logged_in(BASE)
    yield client
    client.close()


def quarantined(cs: Settings, test_id: str) -> str:
    entry = SpoolEntry(
        new_id(),
        Envelope("carol@example.test", ("dave@example.test",), "192.0.2.7", "client.test"),
        make_message(subject=f"held {test_id}", X_Test_Id=test_id).as_bytes(),
    )
    Quarantine(cs.quarantine_dir).put(entry, entry.content, "virus Test.Marker", {})
    return entry.id


def test_the_first_administrator_is_added_with_the_command_and_can_log_in(console, console_env,
                                                                          cs):  # fmt: skip
    cs.console_users_file.unlink(missing_ok=True)
    said = add_admin(console_env)
    assert "administrator 'admin' saved" in said
    assert oct(cs.console_users_file.stat().st_mode & 0o777) == "0o600"
    assert PASSWORD not in cs.console_users_file.read_text()
    with httpx.Client(base_url=BASE) as client:
        token = csrf_token(client.get("/login").text)
        answer = client.post("/login", data={"name": ADMIN, "password": PASSWORD,
                                             "csrf_token": token})  # fmt: skip
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        home = client.get("/")
        assert home.status_code == 200
        assert "Dashboard" in home.text
        assert ADMIN in home.text
        client.post("/logout", data={"csrf_token": csrf_token(home.text)})
        assert client.get("/", follow_redirects=False).status_code == 303


def test_a_wrong_password_answers_slowly_and_the_same_for_an_unknown_user(admin):
    answers = {}
    for name, password in ((ADMIN, "wrong password"), ("nobody", PASSWORD)):
        client = httpx.Client(base_url=BASE)
        token = csrf_token(client.get("/login").text)
        started = time.monotonic()
        answer = client.post("/login", data={"name": name, "password": password,
                                             "csrf_token": token})  # fmt: skip
        answers[name] = (answer.status_code, time.monotonic() - started)
        assert "Wrong name or password." in answer.text
        assert client.get("/", follow_redirects=False).status_code == 303  # still not in
    assert answers[ADMIN][0] == answers["nobody"][0] == 401
    assert answers[ADMIN][1] >= 1.0
    assert answers["nobody"][1] >= 1.0
    assert abs(answers[ADMIN][1] - answers["nobody"][1]) < 0.5


def test_every_page_and_action_without_a_session_goes_to_the_login(console, cs):
    held = quarantined(cs, "no-session")
    pages = ["/", "/dashboard/live", "/events", "/crashdumps", f"/crashdumps/{'a' * 32}",
             "/quarantine", f"/quarantine/{held}", "/audit", "/alerts", "/assist/dialog",
             f"/reports/{'b' * 20}"]  # fmt: skip
    actions = ["/logout", f"/quarantine/{held}/release", f"/quarantine/{held}/delete",
               "/assist/answer", "/assist/later", "/assist/remember"]  # fmt: skip
    with httpx.Client(base_url=BASE) as anonymous:
        for path in pages:
            answer = anonymous.get(path, follow_redirects=False)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next="), path
        for path in actions:
            answer = anonymous.post(path, data={"ids": "x", "answer": "send"},
                                    follow_redirects=False)  # fmt: skip
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login"), path
    assert (cs.quarantine_dir / f"{held}.eml").exists()  # neither released nor deleted


def test_a_form_posted_without_its_csrf_token_is_refused(admin, cs):
    held = quarantined(cs, "csrf")
    for data in ({}, {"csrf_token": "forged"}):
        answer = admin.post(f"/quarantine/{held}/delete", data=data)
        assert answer.status_code == 403
        assert "did not come from this console" in answer.text
    answer = admin.post("/assist/remember", data={"signature": "abc", "choice": "never"})
    assert answer.status_code == 403
    assert (cs.quarantine_dir / f"{held}.eml").exists()
    with httpx.Client(base_url=BASE) as fresh:  # the login form is protected as well
        answer = fresh.post("/login", data={"name": ADMIN, "password": PASSWORD})
        assert answer.status_code == 403
    token = csrf_token(admin.get("/quarantine").text)
    answer = admin.post(
        f"/quarantine/{held}/delete", headers={"X-CSRF-Token": token}, follow_redirects=False
    )
    assert answer.status_code == 303  # the header is accepted, for the page's own scripts
    assert not (cs.quarantine_dir / f"{held}.eml").exists()


def test_ids_that_try_path_traversal_are_refused(admin, cs):
    victim = cs.quarantine_dir.parent / "victim.json"
    victim.write_text('{"id": "victim", "envelope": {}}')
    token = csrf_token(admin.get("/quarantine").text)
    for path in ("/crashdumps/..%2F..%2F..%2Fetc%2Fpasswd", "/crashdumps/%2E%2E",
                 "/quarantine/..%2Fvictim", "/quarantine/%2E%2E%2Fvictim",
                 "/reports/..%2F..%2Fconsole%2Fsecret", "/reports/..%2Fusers"):  # fmt: skip
        answer = admin.get(path)
        assert answer.status_code == 404, path
        assert "root:" not in answer.text
        assert "victim" not in answer.text
    for path in ("/quarantine/..%2Fvictim/delete", "/quarantine/..%2Fvictim/release"):
        assert admin.post(path, data={"csrf_token": token}).status_code == 404
    assert victim.exists()


def test_quarantine_lists_shows_headers_releases_and_deletes(admin, cs):
    keep, drop = quarantined(cs, "release-me"), quarantined(cs, "delete-me")
    listing = admin.get("/quarantine").text
    assert keep in listing
    assert "carol@example.test" in listing
    assert "virus Test.Marker" in listing
    shown = admin.get(f"/quarantine/{keep}").text
    assert "held release-me" in shown
    assert "X-Test-Id" in shown
    assert "Hello, this is a normal message." not in shown  # headers only, never the body
    token = csrf_token(listing)
    released = admin.post(f"/quarantine/{keep}/release", data={"csrf_token": token})
    assert "released and delivered" in released.text
    assert len(find_delivered(cs.maildir, b"X-Test-Id: release-me")) == 1
    deleted = admin.post(f"/quarantine/{drop}/delete", data={"csrf_token": token})
    assert f"Message {drop} deleted." in deleted.text
    assert not list(cs.quarantine_dir.glob(f"{drop}.*"))
    assert keep not in deleted.text
    assert drop not in admin.get("/quarantine").text
    audit = admin.get("/audit").text
    assert "quarantine release" in audit
    assert "quarantine delete" in audit
    assert ADMIN in audit


def test_the_dashboard_shows_real_mail_with_its_verdict(admin, settings):
    reply = send(make_message(subject="Dashboard check", X_Test_Id="dash"), settings.smtp_port)
    assert reply.code == 250
    # Outcomes reach Redis in rounds of a quarter of a second (mailserver/front/outcomes.py).
    wait_for(lambda: "Dashboard check" in admin.get("/").text, 5, "the message on the dashboard")
    home = admin.get("/").text
    assert "alice@example.test" in home  # addresses: here, for the administrator only
    assert "Messages per minute" in home
    assert "<svg" in home
    assert 'class="v-clean"' in home
    assert "av pool" in home
    assert f"av@{settings.hostname}" in home
    assert "clamav" in home
    assert "closed" in home
    assert "SMTP fronts" in home
    assert "verdict subscriber up" in home
    assert "Dashboard check" in admin.get("/dashboard/live").text


@pytest.fixture
def crash(cs) -> Iterator[dict]:
    client = redisauth.connect(cs)
    incident = crashdumps.Incident(
        "exception", "av", {"name": "clamav"}, "job-terminal", {"blob": "0" * 24, "size": 3},
        exception_type="ConnectionError",
        exception_message="lost clamd while scanning for erin@example.test from 198.51.100.23",
    )  # fmt: skip
    dump = crashdumps.record(incident)
    CrashStore(client, cs.crashdump_dir).save(dump)
    yield dump
    for key in [*client.scan_iter("mailscan:crash*"), *client.scan_iter("mailscan:assist:*")]:
        client.delete(key)


def test_mailscan_assist_asks_in_a_terminal_and_saves_the_report(console_env, cs, crash):
    # Send; no details (the default, an empty line); never ask again for crashes like this.
    done = subprocess.run(
        [sys.executable, "-m", "mailserver.cli", "assist"], input="s\n\nn\n",
        capture_output=True, text=True, env=console_env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "This is exactly what would be sent" in done.stdout
    summary, details = done.stdout.split("would add exactly this")
    assert crash["id"] in summary
    assert "ConnectionError" in summary
    assert "lost clamd" not in summary  # no free text unless the details are chosen
    assert "lost clamd while scanning for [email-" in details  # shown, scrubbed
    assert "erin@example.test" not in done.stdout
    assert "198.51.100.23" not in done.stdout
    saved = done.stdout.split("saved as ")[1].split(";")[0]
    report = json.loads(Path(saved).read_text())
    assert [d["id"] for d in report["crashdumps"]] == [crash["id"]]
    assert "details" not in report["crashdumps"][0]
    assert "lost clamd" not in json.dumps(report)
    again = subprocess.run(
        [sys.executable, "-m", "mailserver.cli", "assist"], input="", capture_output=True,
        text=True, env=console_env, timeout=120, check=False,
    )  # fmt: skip
    assert "No crashdump waits for an answer." in again.stdout


@pytest.fixture
def corrupt_entry(settings: Settings) -> Iterator[str]:
    """A spool file whose envelope line is not JSON, as a disk fault would leave one."""
    entry_id = new_id()
    (settings.spool_dir / "queue" / entry_id).write_bytes(b"{not an envelope\nSubject: x\n\nx\n")
    yield entry_id
    for leftover in (settings.spool_dir / "corrupt").glob(f"{entry_id}*"):
        leftover.unlink()
    redisauth.connect(settings).delete(ALARMS_KEY)


def test_a_corrupt_spool_entry_raises_an_alarm_on_the_dashboard(admin, settings, corrupt_entry):
    corrupt = settings.spool_dir / "corrupt" / corrupt_entry
    wait_for(corrupt.exists, 10, "the entry set aside in corrupt/")
    # Beat's spool check reads what the front reports (every redrive interval) and keeps the
    # alarms for the console; here it is run at once instead of on beat's schedule.
    from beat.tasks import check_spools  # here: a task imported at collection configures Celery

    wait_for(lambda: any("1 corrupt" in alarm for alarm in check_spools()), 10, "beat's alarm")
    page = admin.get("/dashboard/live").text
    assert "Alarms" in page
    assert "1 corrupt spool entries to look at" in page


def test_the_alerts_page_lists_the_front_s_alert_and_the_newest_first(
    admin, settings, corrupt_entry
):
    said = f"corrupt spool entry {corrupt_entry} set aside"
    wait_for(lambda: said in admin.get("/alerts").text, 10, "the front's alert on the page")
    newer = f"breaker for clamav opened after 5 failures ({time.time_ns()})"
    raise_alert(redisauth.connect(settings), "breaker-opened", newer, plugin="clamav")
    page = admin.get("/alerts").text
    assert 'href="/alerts" aria-current="page"' in page
    assert page.index(newer) < page.index(said)  # newest first
    assert "Sent nowhere" in page  # the session's stack names no webhook and no address
