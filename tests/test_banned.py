"""Banned attachments over real SMTP: the av pool runs clamav and the banned engine, as it
does by default; a sender is refused 550 naming the part (pre-queue) and post-queue the
message is quarantined with headers saying which part and which rule."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tasks.wire.keys import OUTCOMES_KEY
from tests.attachment_samples import (
    PDF,
    PNG,
    encrypted_zip,
    nested_zips,
    tar_gz_bomb,
    windows_executable,
    with_attachment,
    zipped,
)
from tests.conftest import POOLS, find_delivered, port, send, stack_env, wait_for
from tests.test_policy_front import logged_record

pytestmark = pytest.mark.integration

# The session stack's Redis, clamd and spamd; pools and fronts of their own on a database of
# their own, so the session's pools (without the banned engine) never take these jobs.
BANNED_DB = 3
SMTP_PORT, POST_QUEUE_PORT = port(12525) + 110, port(12525) + 111


def _env(name: str, smtp_port: int, **overrides: str) -> dict[str, str]:
    return stack_env(
        name, 0,
        redis_url=f"redis://127.0.0.1:{port(16390)}/{BANNED_DB}",
        av_plugins="clamav,banned",
        smtp_port=str(smtp_port),
        metrics_port=str(smtp_port + 7000),
        **overrides,
    )  # fmt: skip


@pytest.fixture(scope="module")
def banned(stack) -> Iterator[Settings]:
    """Both pools and a pre-queue front, with the default av engines."""
    env = _env("banned", SMTP_PORT)
    running = Stack(load_settings(env), env)
    try:
        running.start([*POOLS, "mailserver"], progress=lambda _: None)
        yield running.settings
    finally:
        running.stop()


@pytest.fixture(scope="module")
def post_queue(banned) -> Iterator[Settings]:
    env = _env("banned-post", POST_QUEUE_PORT, mode="post-queue")
    front = Stack(load_settings(env), env)
    try:
        front.start(["mailserver"], progress=lambda _: None)
        yield front.settings
    finally:
        front.stop()


@pytest.mark.parametrize(
    ("name", "data", "content_type", "part"),
    [
        ("invoice.pdf.exe", b"MZ just bytes", "application/pdf", "invoice.pdf.exe"),
        ("outer.zip", zipped("inner.zip", zipped("tool.exe", b"x")), "application/zip",
         "outer.zip/inner.zip/tool.exe"),
        ("photo.jpg", windows_executable(), "image/jpeg", "photo.jpg"),
        ("salaries.zip", encrypted_zip("salaries.xlsx", b"figures"), "application/zip",
         "salaries.zip"),
    ],
)  # fmt: skip
def test_a_banned_attachment_is_refused_550_naming_the_part(banned, name, data, content_type, part):
    reply = send(with_attachment(name, data, content_type), banned.smtp_port)
    assert (reply.code, reply.text) == (
        550,
        f"5.7.1 Message refused: banned attachment {part}",
    )


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [("report.pdf", PDF, "application/pdf"), ("pixel.png", PNG, "image/png")],
)
def test_a_pdf_and_an_image_pass(banned, name, data, content_type):
    marker = f"passes-{name}-{time.time_ns()}"
    reply = send(with_attachment(name, data, content_type, X_Test_Id=marker), banned.smtp_port)
    assert reply.code == 250, reply
    wait_for(lambda: find_delivered(banned.maildir, marker.encode()), 30, "the delivery")
    [delivered] = find_delivered(banned.maildir, marker.encode())
    assert b"X-Virus-Scanned: mailscan; clamav=clean banned=clean" in delivered


@pytest.mark.parametrize(
    ("name", "data", "rule"),
    [
        ("backup.zip", tar_gz_bomb(256 * 1024 * 1024), "archives unpack to more than"),
        ("nest.zip", nested_zips(20), "archives nested deeper than 8"),
    ],
)
def test_hostile_archives_are_refused_within_their_bounds(banned, name, data, rule):
    started = time.monotonic()
    reply = send(with_attachment(name, data, "application/zip"), banned.smtp_port)
    assert reply.code == 550, reply
    assert f"banned attachment {name}" in reply.text
    # Well inside the av pool's soft time limit: the bounds ended it, not a time limit.
    assert time.monotonic() - started < 20
    assert rule in _logged_reason(banned, name)


def _logged_reason(settings: Settings, part: str) -> str:
    """The reason the message log gives for the last outcome naming ``part``."""
    client = redisauth.connect(settings)
    found: list[str] = []

    def logged() -> bool:
        items = [json.loads(raw) for raw in client.lrange(OUTCOMES_KEY, 0, 50)]
        found[:] = [i["reason"] for i in items if part in i["reason"]]
        return bool(found)

    wait_for(logged, 10, "the outcome in the message log")
    return found[0]


def test_post_queue_quarantines_with_headers_naming_part_and_rule(post_queue):
    marker = f"banned-post-{time.time_ns()}"
    message = with_attachment("invoice.pdf.exe", b"MZ", "application/pdf", X_Test_Id=marker)
    assert send(message, post_queue.smtp_port).code == 250

    def quarantined() -> list:
        return [
            p for p in post_queue.quarantine_dir.glob("*.eml") if marker.encode() in p.read_bytes()
        ]

    wait_for(lambda: bool(quarantined()), 30, "the quarantine entry")
    [eml] = quarantined()
    held = eml.read_bytes()
    assert b"X-Virus-Status: Banned" in held
    assert b"X-Banned-Attachment: invoice.pdf.exe (double extension .pdf.exe)" in held
    meta = json.loads(eml.with_suffix(".json").read_text())
    assert meta["reason"] == "banned invoice.pdf.exe (double extension .pdf.exe)"
    assert meta["verdicts"]["av"]["status"] == "banned"
    assert find_delivered(post_queue.maildir, marker.encode()) == []


POLICY_PORT = port(12525) + 112
LISTS = """
[domain."adds.test"]
banned_extensions = { add = ["iso"] }

[domain."only.test"]
banned_extensions = { only = ["js"] }
"""


@pytest.fixture(scope="module")
def with_lists(banned) -> Iterator[dict[str, str]]:
    """A pre-queue front whose policy file extends the list for one domain, replaces it for
    another; on the pools of ``banned``."""
    env = _env("banned-lists", POLICY_PORT)
    path = Path(env["MAILSCAN_VAR_DIR"]) / "policy.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LISTS)
    env = {**env, "MAILSCAN_POLICY_FILE": str(path)}
    front = Stack(load_settings(env), env)
    try:
        front.start(["mailserver"], progress=lambda _: None)
        yield env
    finally:
        front.stop()


def test_a_domain_that_adds_iso_refuses_disk_iso_and_others_get_it(with_lists):
    settings = load_settings(with_lists)
    disk = with_attachment("disk.iso", b"an image", X_Test_Id=f"iso-{time.time_ns()}")
    refused = send(disk, POLICY_PORT, ["ann@adds.test"])
    assert (refused.code, refused.text) == (
        550,
        "5.7.1 Message refused: banned attachment disk.iso",
    )
    marker = f"iso-split-{time.time_ns()}"
    disk = with_attachment("disk.iso", b"an image", X_Test_Id=marker)
    reply = send(disk, POLICY_PORT, ["ann@adds.test", "bob@example.test"])
    assert reply.code == 250
    assert reply.text.startswith("2.0.0 Ok: 1 quarantined; 1 delivered"), reply.text
    wait_for(lambda: find_delivered(settings.maildir, marker.encode()), 30, "the delivery")
    [delivered] = find_delivered(settings.maildir, marker.encode())
    assert b"X-Banned-Attachment" not in delivered
    [held] = [p for p in settings.quarantine_dir.glob("*.eml") if marker.encode() in p.read_bytes()]
    assert b"X-Banned-Attachment: disk.iso (banned_extensions add .iso)" in held.read_bytes()
    logged = logged_record(with_lists, reply.text.rsplit(" ", 1)[1])
    details = {r["address"]: r["detail"] for r in logged["recipients"]}
    assert details["ann@adds.test"].startswith(
        "domain adds.test: banned attachment (banned_extensions add .iso)"
    )


def test_an_exe_passes_where_the_list_is_only_js(with_lists):
    marker = f"only-js-{time.time_ns()}"
    tool = with_attachment("tool.exe", b"not a real program", X_Test_Id=marker)
    assert send(tool, POLICY_PORT, ["carl@only.test"]).code == 250
    settings = load_settings(with_lists)
    wait_for(lambda: find_delivered(settings.maildir, marker.encode()), 30, "the delivery")
    tool = with_attachment("tool.exe", b"not a real program")
    assert send(tool, POLICY_PORT, ["dan@example.test"]).code == 550
