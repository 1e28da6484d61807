"""The message log in the console, on the session's stack: real mail sent over SMTP (clean,
GTUBE spam, EICAR refused 550) found in Chromium by the search fields and opened on its own
page (verdict, the GTUBE rule with SpamAssassin's description, the time of each step); over
plain HTTP, paging, a search that finds nothing, and a visitor who has not logged in."""

from __future__ import annotations

import os
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from mailserver.supervisor.stack import Stack
from tasks.settings import Settings, load_settings
from tests.conftest import EICAR, GTUBE, make_message, on_the_wire, port, wait_for
from tests.console_session import ADMIN, PASSWORD, add_admin, console_only, logged_in
from tests.test_console_browser import CHROMIUM_ARGS

pytestmark = pytest.mark.integration
CONSOLE_PORT = port(18030)
BASE = f"http://127.0.0.1:{CONSOLE_PORT}"
GTUBE_DESCRIPTION = "Generic Test for Unsolicited Bulk Email"


@pytest.fixture(scope="module")
def console_env(stack) -> dict[str, str]:
    # The same settings as the session's front: the console reads the log the front writes.
    return {**os.environ, "MAILSCAN_CONSOLE_PORT": str(CONSOLE_PORT)}


@pytest.fixture(scope="module")
def cs(console_env) -> Settings:
    return load_settings(console_env)


@pytest.fixture(scope="module")
def console(cs, console_env) -> Iterator[Stack]:
    with console_only(console_env) as running:
        if not cs.console_users_file.exists():
            add_admin(console_env)
        yield running


@pytest.fixture
def admin(console) -> Iterator[httpx.Client]:
    client = logged_in(BASE)
    yield client
    client.close()


def sent(settings: Settings, message: EmailMessage, sender: str, rcpt: str) -> int:
    """Over real SMTP from ``sender``; the reply code the client heard."""
    with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=120) as client:
        client.ehlo("client.example.test")
        client.mail(sender)
        client.rcpt(rcpt)
        try:
            code, _ = client.data(on_the_wire(message))
        except smtplib.SMTPDataError as refused:
            code = refused.smtp_code
        return code


def listed(admin: httpx.Client, query: dict[str, str], wanted: int) -> str:
    """The search page once the log holds ``wanted`` matches (the front writes it shortly
    after its reply)."""
    found: list[str] = []

    def enough() -> bool:
        found[:] = [admin.get("/messages", params=query).text]
        return found[0].count('href="/messages/') >= wanted

    wait_for(enough, 30, f"{wanted} message(s) for {query}")
    return found[0]


def test_a_visitor_who_has_not_logged_in_is_sent_to_the_login(console):
    for path in ("/messages", "/messages/0123456789abcdef01234567"):
        answer = httpx.get(BASE + path, params={"from": "a@example.test"})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login?next=")
        assert "example.test" not in answer.text


def test_the_search_is_paged(admin, cs):
    tag = f"paged{time.time_ns()}"
    sender = f"{tag}@example.test"
    for n in range(3):
        message = make_message(subject=f"Paging {tag} number {n}")
        assert sent(cs, message, sender, "bob@example.test") == 250
    listed(admin, {"from": sender}, 3)
    first = admin.get("/messages", params={"from": sender, "per_page": "2"}).text
    assert first.count('href="/messages/') == 2
    assert "number 2" in first
    assert "number 1" in first
    assert 'rel="next"' in first
    assert 'rel="prev"' not in first
    second = admin.get("/messages", params={"from": sender, "per_page": "2", "page": "2"}).text
    assert second.count('href="/messages/') == 1
    assert "number 0" in second
    assert 'rel="next"' not in second
    assert 'rel="prev"' in second


def test_a_search_that_finds_nothing_says_so(admin):
    answer = admin.get("/messages", params={"from": f"nobody{time.time_ns()}@example.test"})
    assert answer.status_code == 200
    assert "No messages found." in answer.text
    assert 'href="/messages/' not in answer.text
    assert admin.get("/messages/0123456789abcdef01234567").status_code == 404
    bad = admin.get("/messages", params={"since": "yesterday-ish"})
    assert bad.status_code == 400
    assert "is no date and time" in bad.text


@pytest.fixture(scope="module")
def browser(console) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                              args=CHROMIUM_ARGS)  # fmt: skip
        yield chromium
        chromium.close()


def logged_in_page(browser: Browser) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{BASE}/messages")
    page.fill("input[name=name]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    expect(page.locator("h1")).to_have_text("Messages")
    return page


def search(page: Page, fields: dict[str, str], verdict: str = "") -> None:
    """Fill the search form as a person would, and open the one message it finds."""
    page.goto(f"{BASE}/messages")
    for name, value in fields.items():
        page.fill(f"form.search input[name={name}]", value)
    if verdict:
        page.select_option("form.search select[name=verdict]", verdict)
    page.click("form.search button[type=submit]")
    rows = page.locator("table.results tbody tr")
    expect(rows).to_have_count(1)
    rows.first.locator("a").click()
    expect(page.locator("h1")).to_contain_text("Message")


def confirm_spam(page: Page, copy: EmailMessage, said: str) -> None:
    """ "Spam: confirm" on a delivered message's page, with the copy from the mailbox."""
    upload = {"name": "copy.eml", "mimeType": "message/rfc822", "buffer": on_the_wire(copy)}
    page.set_input_files("form.upload input[name=message]", files=[upload])
    page.get_by_role("button", name="Spam: confirm").click()
    expect(page.locator("p.flash")).to_contain_text(said, timeout=90_000)


def steps_shown(page: Page) -> set[str]:
    return set(page.locator("table.timeline tbody tr td:first-child").all_inner_texts())


def test_real_mail_is_found_by_each_field_and_its_page_says_why(browser, admin, cs):
    tag = f"t{time.time_ns()}"
    clean = make_message(subject=f"Quarterly figures {tag}")
    spam = make_message(body=f"Buy now {GTUBE}", subject=f"Offer {tag}")
    virus = make_message(body="see attached", attachment=EICAR, subject=f"Invoice {tag}")
    assert sent(cs, clean, f"clean-{tag}@example.test", "bob@example.test") == 250
    assert sent(cs, spam, f"spam-{tag}@example.test", "bob@example.test") == 250
    assert sent(cs, virus, f"virus-{tag}@example.test", f"carol-{tag}@example.test") == 550
    listed(admin, {"subject": tag}, 3)
    page = logged_in_page(browser)

    search(page, {"from": f"clean-{tag}@example.test"})
    expect(page.locator("#verdict")).to_have_text("clean")
    expect(page.locator("dl.facts")).to_contain_text(f"Quarterly figures {tag}")
    assert {"spool", "scan.av", "scan.spam", "delivery"} <= steps_shown(page)
    expect(page.locator("table.timeline")).to_contain_text(" ms")

    search(page, {"message_id": spam["Message-ID"], "subject": f"Offer {tag}"})
    expect(page.locator("#verdict")).to_have_text("spam")
    gtube = page.locator("table.rules tr", has_text="GTUBE")
    expect(gtube).to_contain_text(GTUBE_DESCRIPTION)
    expect(gtube).to_contain_text("1000")
    assert {"scan.spam", "delivery"} <= steps_shown(page)
    confirm_spam(page, clean, "its Message-ID differs")  # the wrong file teaches nothing
    confirm_spam(page, spam, "as spam")

    search(page, {"to": f"carol-{tag}@example.test", "client": "127.0.0.1"}, verdict="virus")
    expect(page.locator("#verdict")).to_have_text("virus")
    expect(page.locator("table.engines")).to_contain_text("EICAR")
    expect(page.locator("table.recipients")).to_contain_text("refused")
    expect(page.locator("dl.facts")).to_contain_text("550")
    assert "scan.av" in steps_shown(page)
    page.context.close()
