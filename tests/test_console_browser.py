"""The assist dialog in a real browser (Debian's chromium driven by Playwright), on a stack of
its own with the chaos plugin in the av pool: a real plugin crash, the dialog in the open
console (immediate) or at the next console start (next-start), and what each answer sends to
a real HTTP receiver. The screenshots in the README are taken here."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Response, expect, sync_playwright

from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.crashes.store import CrashStore
from tasks.plugins.chaos import marker
from tasks.settings import Settings, load_settings
from tests.conftest import (
    EICAR,
    GTUBE,
    TEST_ROOT,
    make_message,
    port,
    running_stack,
    send,
    stack_env,
    wait_for,
)
from tests.console_session import ADMIN, PASSWORD, ReportReceiver, add_admin, receiving

pytestmark = pytest.mark.integration
CONSOLE_PORT = port(18025)
BASE = f"http://127.0.0.1:{CONSOLE_PORT}"
TOKEN = "test-token-for-the-receiver"
# The README's screenshots are written only when asked (UPDATE_SCREENSHOTS=yes):
# otherwise every test run would change them in the working tree. Without it they go to the
# run's own folder, removed at its end, so the screenshot step is still tested.
DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
SCREENSHOTS = (
    DOCS_SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "yes" else TEST_ROOT / "screenshots"
)
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]  # fmt: skip
DIALOG_S = 30_000  # ms: a crash reaches Redis, the event stream, then the page


@pytest.fixture(scope="module")
def receiver() -> Iterator[ReportReceiver]:
    with receiving() as server:
        yield server


@pytest.fixture(scope="module")
def console_env(receiver) -> dict[str, str]:
    # A full crashdump per second: a test that crashes the plugin twice gets two records.
    return stack_env("console", 3, av_plugins="chaos,clamav", console_port=str(CONSOLE_PORT),
                     assist_url=receiver.url, assist_token=TOKEN,
                     assist_prompt="immediate", crashdump_full_every_s="1")  # fmt: skip


@pytest.fixture(scope="module")
def bs(console_env) -> Settings:
    return load_settings(console_env)


@pytest.fixture(scope="module")
def console(bs, console_env) -> Iterator[Stack]:
    for stack in running_stack(bs, console_env):
        stack.start(["ops-worker", "console"], progress=lambda _: None)
        add_admin(console_env)
        yield stack


@pytest.fixture(scope="module")
def browser(console) -> Iterator[Browser]:
    # After the stack: Playwright's sync API keeps an event loop running in this thread, and
    # the stack's readiness checks of spamd run one of their own.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                              args=CHROMIUM_ARGS)  # fmt: skip
        yield chromium
        chromium.close()


@pytest.fixture
def crashes(console, bs, receiver) -> CrashStore:
    """No crashdump, decision or remembered choice left from an earlier test."""
    client = redisauth.connect(bs)
    for pattern in ("mailscan:crash*", "mailscan:assist:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
    receiver.reports.clear()
    return CrashStore(client, bs.crashdump_dir)


def open_console(browser: Browser) -> Page:
    """A new console session: a browser context of its own, logged in through the form."""
    page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    page.goto(f"{BASE}/")
    page.fill("input[name=name]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    expect(page.locator("h1")).to_have_text("Dashboard")
    return page


def crash_the_plugin(bs: Settings, crashes: CrashStore, test_id: str) -> dict[str, Any]:
    """A real plugin failure: the chaos plugin raises on this message; the sender hears 451."""
    before = {d["id"] for d in crashes.records()}
    # The same failure keeps one full record per window (MAILSCAN_CRASHDUMP_FULL_EVERY_S).
    window = bs.crashdump_full_every_s
    newest = max((d["ts"] for d in crashes.records()), default=0.0)
    wait_for(lambda: time.time() // window > newest // window, 5, "the next crashdump window")
    body = f"Please look: {marker('raise').decode()} thanks, alice@example.test"
    message = make_message(body=body, subject=f"Private subject {test_id}", X_Test_Id=test_id)
    assert send(message, bs.smtp_port).code == 451
    wait_for(lambda: {d["id"] for d in crashes.records()} - before, 30, "the crashdump")
    [dump] = [d for d in crashes.records() if d["id"] not in before]
    return dump


def dialog_payload(page: Page) -> dict[str, Any]:
    return json.loads(page.locator("dialog#assist pre.payload").inner_text())


def dialog_details(page: Page) -> list[dict[str, Any]]:
    """What the dialog says ticking "Include details" adds: per crashdump, its details."""
    return json.loads(page.locator("dialog#assist pre.details").inner_text())


def with_details(payload: dict[str, Any], added: list[dict[str, Any]]) -> dict[str, Any]:
    details = {entry["id"]: entry["details"] for entry in added}
    dumps = [{**dump, "details": details[dump["id"]]} for dump in payload["crashdumps"]]
    return {**payload, "crashdumps": dumps}


def include_details(page: Page) -> list[dict[str, Any]]:
    """Tick the box; return the details the dialog then shows."""
    preview = page.locator("dialog#assist pre.details")
    expect(preview).to_be_hidden()  # nothing of the details until they are chosen
    page.locator("dialog#assist").get_by_label("Include details").check()
    expect(preview).to_be_visible()
    return dialog_details(page)


def asked_for_dialog(response: Response) -> bool:
    """The page's own request for the dialog, made when it hears of a new crashdump."""
    return "/assist/dialog" in response.url


def answer(page: Page, button: str) -> None:
    page.locator("dialog#assist").get_by_role("button", name=button, exact=True).click()


def decision_of(page: Page, dump_id: str) -> str:
    page.goto(f"{BASE}/crashdumps/{dump_id}")
    return page.locator("#decision").inner_text()


def test_immediate_dialog_in_the_open_console_and_send_delivers_the_payload(
    browser, bs, crashes, receiver
):
    page = open_console(browser)
    page.evaluate("window.openedBefore = 'yes'")
    dump = crash_the_plugin(bs, crashes, "immediate-send")
    dialog = page.locator("dialog#assist")
    expect(dialog).to_be_visible(timeout=DIALOG_S)
    assert page.evaluate("window.openedBefore") == "yes"  # shown without a reload
    expect(dialog).to_contain_text("Send a crash report for analysis?")
    expect(dialog).to_contain_text("chaos")
    shown = page.locator("dialog#assist pre.payload").inner_text()
    assert "alice@example.test" not in shown
    assert "Private subject" not in shown
    assert "injected plugin failure" not in shown  # no free text by default
    expect(page.locator("dialog#assist pre.details")).to_be_hidden()
    payload = dialog_payload(page)
    assert [d["id"] for d in payload["crashdumps"]] == [dump["id"]]
    assert payload["crashdumps"][0]["exception"]["type"] == "RuntimeError"
    assert any(":fail:" in frame for frame in payload["crashdumps"][0]["frames"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "assist-dialog.png"))
    answer(page, "Send")
    expect(page.locator(".flash")).to_contain_text("queued for sending")
    expect(page.locator(".flash")).to_contain_text("without details")
    wait_for(lambda: receiver.reports, 60, "the report at the receiver")
    [report] = receiver.reports
    assert report["json"] == payload  # exactly what the dialog showed, no details
    assert "details" not in report["json"]["crashdumps"][0]
    assert report["headers"]["Authorization"] == f"Bearer {TOKEN}"
    wait_for(lambda: decision_of(page, dump["id"]) == "sent", 30, "the record to show sent")
    page.goto(f"{BASE}/audit")
    expect(page.locator("table.audit")).to_contain_text("uploaded")
    expect(page.locator("table.audit")).to_contain_text(ADMIN)


def test_details_go_only_when_ticked_and_exactly_as_previewed(browser, bs, crashes, receiver):
    page = open_console(browser)
    dump = crash_the_plugin(bs, crashes, "immediate-details")
    expect(page.locator("dialog#assist")).to_be_visible(timeout=DIALOG_S)
    payload, added = dialog_payload(page), include_details(page)
    assert [entry["id"] for entry in added] == [dump["id"]]
    preview = page.locator("dialog#assist pre.details").inner_text()
    assert "chaos: injected plugin failure" in preview
    assert "alice@example.test" not in preview
    assert "Private subject" not in preview
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("dialog#assist pre.details").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "assist-dialog-details.png"))
    answer(page, "Send")
    expect(page.locator(".flash")).to_contain_text("with details")
    wait_for(lambda: receiver.reports, 60, "the report at the receiver")
    [report] = receiver.reports
    assert report["json"] == with_details(payload, added)


def test_dont_send_sends_nothing_and_the_record_shows_declined(browser, bs, crashes, receiver):
    page = open_console(browser)
    dump = crash_the_plugin(bs, crashes, "immediate-decline")
    expect(page.locator("dialog#assist")).to_be_visible(timeout=DIALOG_S)
    answer(page, "Don't send")
    expect(page.locator(".flash")).to_contain_text("will not be sent")
    assert decision_of(page, dump["id"]) == "declined"
    expect(page.locator("main")).to_contain_text(f"by {ADMIN}")
    # A report sent later goes the same way: once it arrives, the declined one had its chance.
    later = crash_the_plugin(bs, crashes, "immediate-decline-later")
    expect(page.locator("dialog#assist")).to_be_visible(timeout=DIALOG_S)
    answer(page, "Send")
    wait_for(lambda: receiver.reports, 60, "the later report at the receiver")
    sent = [d["id"] for report in receiver.reports for d in report["json"]["crashdumps"]]
    assert sent == [later["id"]]


def test_a_remembered_never_sends_nothing_next_time(browser, bs, crashes, receiver):
    page = open_console(browser)
    crash_the_plugin(bs, crashes, "never-first")
    expect(page.locator("dialog#assist")).to_be_visible(timeout=DIALOG_S)
    page.select_option("dialog#assist select[name=remember]", "never")
    answer(page, "Don't send")
    expect(page.locator(".flash")).to_be_visible()
    page.evaluate("window.openedBefore = 'yes'")
    with page.expect_response(asked_for_dialog, timeout=DIALOG_S) as asked:
        again = crash_the_plugin(bs, crashes, "never-again")
    # The page heard of the crash and asked; the answer was that no dialog is due (204).
    assert asked.value.status == 204
    expect(page.locator("dialog#assist")).to_have_count(0)
    assert page.evaluate("window.openedBefore") == "yes"
    assert decision_of(page, again["id"]) == "declined"
    expect(page.locator("main")).to_contain_text("remembered choice: never")
    assert receiver.reports == []


@pytest.fixture
def next_start(console) -> Iterator[Stack]:
    console.env["MAILSCAN_ASSIST_PROMPT"] = "next-start"
    console.restart("console")
    yield console
    console.env["MAILSCAN_ASSIST_PROMPT"] = "immediate"
    console.restart("console")


def test_next_start_dialog_waits_for_the_next_console_session(
    browser, bs, crashes, receiver, next_start
):
    open_before = open_console(browser)
    with open_before.expect_response(asked_for_dialog, timeout=DIALOG_S) as asked:
        dump = crash_the_plugin(bs, crashes, "next-start")
    assert asked.value.status == 204
    expect(open_before.locator("dialog#assist")).to_have_count(0)
    open_before.reload()
    expect(open_before.locator("dialog#assist")).to_have_count(0)
    opened_after = open_console(browser)  # the first page of a new session
    expect(opened_after.locator("dialog#assist")).to_be_visible()
    payload = dialog_payload(opened_after)
    assert [d["id"] for d in payload["crashdumps"]] == [dump["id"]]
    added = include_details(opened_after)  # this path, too, sends what was chosen
    answer(opened_after, "Send")
    wait_for(lambda: receiver.reports, 60, "the report at the receiver")
    assert receiver.reports[0]["json"] == with_details(payload, added)


@pytest.fixture
def no_endpoint(console) -> Iterator[Stack]:
    url = console.env.pop("MAILSCAN_ASSIST_URL")
    console.restart("console")
    yield console
    console.env["MAILSCAN_ASSIST_URL"] = url
    console.restart("console")


def test_without_an_endpoint_send_saves_a_report_to_download(
    browser, bs, crashes, receiver, no_endpoint
):
    page = open_console(browser)
    crash_the_plugin(bs, crashes, "no-endpoint")
    expect(page.locator("dialog#assist")).to_be_visible(timeout=DIALOG_S)
    expect(page.locator("dialog#assist")).to_contain_text("No endpoint is configured")
    payload = dialog_payload(page)
    answer(page, "Send")
    link = page.locator(".flash a")
    expect(link).to_have_text("Download it to pass it on")
    download = page.request.get(BASE + link.get_attribute("href"))
    assert download.ok
    assert json.loads(download.text()) == payload
    assert receiver.reports == []


def test_dashboard_shows_pools_breakers_and_the_last_hour(browser, bs, crashes):
    for n in range(4):
        reply = send(make_message(subject=f"Hello {n}", X_Test_Id=f"dash-{n}"), bs.smtp_port)
        assert reply.code == 250
    assert send(make_message(attachment=EICAR, X_Test_Id="dash-virus"), bs.smtp_port).code == 550
    assert send(make_message(body=GTUBE, X_Test_Id="dash-spam"), bs.smtp_port).code == 250
    crash_the_plugin(bs, crashes, "dash-tempfail")  # its own tempfail, not an earlier test's
    page = open_console(browser)
    expect(page.locator("dialog#assist")).to_be_visible(timeout=DIALOG_S)
    answer(page, "Don't send")  # the dashboard's screenshot shows the dashboard alone
    expect(page.locator(".flash")).to_contain_text("will not be sent")
    expect(page.locator(".card.pool").first).to_contain_text("av pool")
    expect(page.locator("ul.breakers:not(.fronts)")).to_contain_text("chaos")
    expect(page.locator("table.messages")).to_contain_text("Hello 3")
    for verdict in ("clean", "virus", "spam", "tempfail"):
        assert page.locator(f"svg.chart rect.v-{verdict}").count() >= 1, verdict
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
