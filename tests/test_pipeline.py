"""End to end: real SMTP in, real pools and daemons, Maildir or quarantine out."""

import base64
import io
import json
import os
import random
import re
import signal
import time
import zipfile

import pytest

from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.wire.verdicts import PoolVerdict
from tests.conftest import (
    EICAR,
    GTUBE,
    LongestCommand,
    find_delivered,
    mailscan,
    make_message,
    send,
    wait_for,
)

pytestmark = pytest.mark.integration


def header_block(message: bytes) -> str:
    return message.split(b"\n\n", 1)[0].decode()


def test_clean_mail_is_delivered_with_the_scan_headers(stack, settings):
    reply = send(make_message(subject="clean one", X_Test_Id="clean-1"), settings.smtp_port)
    assert reply.code == 250
    [delivered] = find_delivered(settings.maildir, b"X-Test-Id: clean-1")
    head = header_block(delivered)
    assert "X-Spam-Flag: NO" in head
    assert "X-Virus-Status: Clean" in head
    assert "X-Virus-Scanned: mailscan; clamav=clean builtin=clean command=clean" in head
    assert "by " + settings.hostname + " (mailscan) with ESMTP" in head
    assert head.startswith("Return-Path: <alice@example.test>")


def test_gtube_is_delivered_tagged_as_spam(stack, settings):
    reply = send(make_message(body=GTUBE, X_Test_Id="gtube-1"), settings.smtp_port)
    assert reply.code == 250
    [delivered] = find_delivered(settings.maildir, b"X-Test-Id: gtube-1")
    head = header_block(delivered)
    assert "X-Spam-Flag: YES" in head
    score = float(head.split("X-Spam-Score: ")[1].split()[0])
    assert score > 5.0
    assert "GTUBE" in head.split("X-Spam-Status:")[1]


def test_eicar_is_refused_with_the_virus_name_in_pre_queue_mode(stack, settings):
    reply = send(make_message(attachment=EICAR, X_Test_Id="eicar-1"), settings.smtp_port)
    assert reply.code == 550
    assert "5.7.1" in reply.text
    assert "EICAR" in reply.text
    assert find_delivered(settings.maildir, b"X-Test-Id: eicar-1") == []


def test_a_finished_message_leaves_no_copy_of_its_bytes_in_redis(stack, settings):

    from tasks.wire import blobs

    client = redisauth.connect(settings)
    reply = send(make_message(X_Test_Id="blob-gone-1"), settings.smtp_port)
    assert reply.code == 250
    entry_id = reply.text.rsplit(" as ", 1)[1]
    # Both jobs read it; once delivered, it goes in the front's next write round.
    wait_for(lambda: not client.exists(blobs.key(entry_id)), 5, "the blob to go")


def test_message_bodies_never_reach_redis_append_only_file(stack, settings):
    def logged() -> bytes:
        return b"".join(p.read_bytes() for p in (settings.var_dir / "redis").rglob("*.aof"))

    marker = f"body-{time.time_ns()}"
    reply = send(make_message(body=marker, subject=f"subject-{marker}"), settings.smtp_port)
    assert reply.code == 250
    # The console's outcome record (with the subject) is logged like any other write...
    wait_for(lambda: f"subject-{marker}".encode() in logged(), 10, "the outcome in the AOF")
    # ...the message itself is not: it was stored outside Redis's persistence.
    assert marker.encode() not in logged().replace(f"subject-{marker}".encode(), b"")


def spam_status(head: str) -> str:
    """The X-Spam-Status field, unfolded."""
    field = re.search(r"^X-Spam-Status: (.*(?:\n\t.*)*)", head, re.MULTILINE)
    assert field, head
    return field[1].replace(",\n\t", ",")


def scanned_share(status: str) -> tuple[int, int]:
    """What ``(first N bytes of M scanned)`` at the end of X-Spam-Status says: N, M."""
    found = re.search(r"\(first (\d+) bytes of (\d+) scanned\)$", status)
    assert found, status
    return int(found[1]), int(found[2])


def test_a_big_message_is_spam_scanned_on_its_head_and_says_so(stack, settings):
    # GTUBE in the first part, then an attachment of noise four times the limit.
    noise = random.Random(11).randbytes(settings.spam_max_bytes * 3)
    message = make_message(body=GTUBE, attachment=noise, X_Test_Id="big-gtube-1").as_bytes()
    assert send(message, settings.smtp_port).code == 250
    [delivered] = find_delivered(settings.maildir, b"X-Test-Id: big-gtube-1")
    head = header_block(delivered)
    assert "X-Spam-Flag: YES" in head
    status = spam_status(head)
    assert status.startswith("Yes,"), status
    assert "GTUBE" in status
    scanned, size = scanned_share(status)
    assert scanned <= settings.spam_max_bytes < len(message) <= size
    assert "X-Virus-Status: Clean" in head  # the av pool still scans the whole of it


def test_spam_past_spamassassins_share_of_a_big_message_is_not_seen_and_it_says_so(stack, settings):
    # A first text part larger than the limit; GTUBE only in the second, past the cut.
    filler = "".join(f"line {n} of a long but ordinary report\n" for n in range(20_000))
    assert len(filler) > settings.spam_max_bytes
    message = make_message(body=filler, X_Test_Id="late-gtube-1")
    message.add_attachment(GTUBE, disposition="inline")
    assert send(message.as_bytes(), settings.smtp_port).code == 250
    [delivered] = find_delivered(settings.maildir, b"X-Test-Id: late-gtube-1")
    status = spam_status(header_block(delivered))
    assert status.startswith("No,"), status
    assert "GTUBE" not in status
    scanned, size = scanned_share(status)
    assert scanned <= settings.spam_max_bytes < size


def test_a_big_message_reaches_the_pools_through_the_spool_not_through_redis(stack, settings):
    # Random text, so the front does not compress it (tasks/wire/blobs.py).
    noise = base64.encodebytes(random.Random(7).randbytes(settings.shared_spool_from_bytes))
    body = noise.decode("ascii")
    # The virus is in the spooled part: finding it proves the pools read the spool file.
    message = make_message(body=body, attachment=EICAR, X_Test_Id="big-eicar-1").as_bytes()
    with LongestCommand(settings) as redis_saw:
        reply = send(message, settings.smtp_port)
    assert (reply.code, "EICAR" in reply.text) == (550, True), reply
    assert redis_saw.commands > 10  # the enqueue, the jobs, the verdicts
    assert redis_saw.longest < 64 * 1024 < settings.shared_spool_from_bytes < len(message)


@pytest.mark.parametrize("size", ["small", "big"])
def test_a_message_without_headers_is_scanned_like_any_other(stack, settings, size):
    # A blank line first: the header block is empty. Our lines on top must not make the
    # pools' digest of the message differ from the front's, which would answer it 451.
    marker = f"headerless-{size}-{time.time_ns()}"
    filler = "x" * 70 + "\r\n"
    lines = filler * (settings.shared_spool_from_bytes // len(filler) + 1) if size == "big" else ""
    message = f"\r\n{marker}: no header at all\r\n{lines}".encode()
    assert send(message, settings.smtp_port).code == 250
    [delivered] = find_delivered(settings.maildir, marker.encode())
    assert "X-Virus-Status: Clean" in header_block(delivered)
    assert send(b"\r\n" + EICAR + b"\r\n", settings.smtp_port).code == 550


def test_a_job_whose_message_is_gone_ends_as_not_scanned_without_failing(stack, settings):
    from tasks import runner
    from tasks.celery import app

    # A job that waited past its message's outcome: the front has removed the bytes.
    ref = {"blob": "gone" + "0" * 20, "size": 100, "digest": "0" * 64}
    result = runner.scan("av", ref, settings, "gone-job", "test@host", app.backend)
    assert (result.status, result.engines) == ("error", ())
    assert app.AsyncResult("gone-job").get(timeout=5)["status"] == "error"


def test_a_virus_is_refused_on_the_av_verdict_alone_and_its_spam_job_skips_spamd(stack, settings):

    from mailserver.front.spool import spooled_at
    from tasks.celery import app
    from tasks.guards.virusfirst import SKIPPED
    from tasks.wire.jobids import parse_job_id
    from tasks.wire.keys import RESULT_KEY_PREFIX
    from tasks.wire.spoolfile import is_entry_id

    client = redisauth.connect(settings)
    spam_pool = stack.pid("spam-worker")
    os.killpg(spam_pool, signal.SIGSTOP)  # no spam verdict can come
    try:
        sent, sent_wall = time.monotonic(), time.time()
        reply = send(make_message(attachment=EICAR, X_Test_Id="virus-first"), settings.smtp_port)
        waited = time.monotonic() - sent
    finally:
        os.killpg(spam_pool, signal.SIGCONT)
    assert (reply.code, "EICAR" in reply.text) == (550, True), reply
    assert waited < settings.scan_deadline_s / 3
    found: list[PoolVerdict] = []

    def spam_verdict_of_the_virus() -> bool:
        for key in client.scan_iter(match=RESULT_KEY_PREFIX + "*-spam-*", count=1000):
            blob_id = parse_job_id(key.decode().removeprefix(RESULT_KEY_PREFIX)).blob_id
            if is_entry_id(blob_id) and spooled_at(blob_id) >= int(sent_wall * 1000) / 1000:
                found.append(PoolVerdict.from_record(app.backend.decode(client.get(key))["result"]))
        return bool(found)

    # The pool resumed and took the job: it found the av verdict and did not ask spamd.
    wait_for(spam_verdict_of_the_virus, 20, "the spam job of the virus")
    [skipped] = found
    assert (skipped.status, _details(skipped)) == ("skipped", [SKIPPED])


def _details(result: PoolVerdict) -> list:
    return [v.detail for v in result.engines]


def test_a_spam_job_scans_when_the_av_verdict_is_clean_and_skips_when_infected(stack, settings):

    from tasks import runner
    from tasks.celery import app
    from tasks.guards.virusfirst import SKIPPED
    from tasks.wire import results
    from tasks.wire.blobs import put
    from tasks.wire.jobids import job_ids

    client = redisauth.connect(settings)
    for av_status, expected in (("clean", "spam"), ("infected", "skipped")):
        blob_id = f"vf{av_status}{time.time_ns():x}"
        ref = put(client, blob_id, make_message(body=GTUBE).as_bytes(), 60)
        ids = job_ids(blob_id)
        av = PoolVerdict("av", av_status)
        results.store(client.pipeline(transaction=False), app.backend, ids["av"], av)
        spam = runner.scan("spam", ref, settings, ids["spam"], "test@host", app.backend)
        assert spam.status == expected, spam
        assert (_details(spam) == [SKIPPED]) == (av_status == "infected")


def test_av_and_spam_jobs_run_in_different_pools(stack, settings):
    from mailserver.cli.scanfile import scan_file

    path = settings.var_dir / "pools.eml"
    path.write_bytes(make_message().as_bytes())
    results = scan_file(settings, path, timeout_s=30)
    # The worker's own name, written by the worker that ran the job.
    assert results["av"].worker == f"av@{settings.hostname}"
    assert results["spam"].worker == f"spam@{settings.hostname}"


@pytest.fixture(scope="module")
def post_queue(stack, settings):
    """A second SMTP front in post-queue mode, sharing Redis and the pools."""
    var = settings.var_dir / "post-queue"
    env = {
        **os.environ,
        "MAILSCAN_MODE": "post-queue",
        "MAILSCAN_SMTP_PORT": str(settings.smtp_port + 1),
        "MAILSCAN_METRICS_PORT": str(settings.metrics_port + 9),
        "MAILSCAN_VAR_DIR": str(var),
    }
    from tasks.settings import load_settings

    front_settings = load_settings(env)
    front = Stack(front_settings, env)
    front.start(["mailserver"], progress=lambda _: None)
    yield front_settings
    front.stop()


def test_eicar_is_quarantined_in_post_queue_mode(post_queue):
    settings = post_queue
    reply = send(make_message(attachment=EICAR, X_Test_Id="eicar-post"), settings.smtp_port)
    assert reply.code == 250
    wait_for(lambda: any(settings.quarantine_dir.glob("*.json")), 30, "the quarantine entry")
    [meta_path] = settings.quarantine_dir.glob("*.json")
    meta = json.loads(meta_path.read_text())
    assert "EICAR" in meta["reason"]
    assert meta["verdicts"]["av"]["status"] == "infected"
    quarantined = meta_path.with_suffix(".eml").read_bytes()
    assert b"X-Test-Id: eicar-post" in quarantined
    assert b"X-Virus-Status: Infected" in quarantined
    assert find_delivered(settings.maildir, b"eicar-post") == []


def test_post_queue_clean_mail_is_delivered_after_the_250(post_queue):
    settings = post_queue
    reply = send(make_message(X_Test_Id="clean-post"), settings.smtp_port)
    assert reply.code == 250
    assert "queued as" in reply.text
    wait_for(lambda: find_delivered(settings.maildir, b"clean-post"), 30, "delivery")
    wait_for(lambda: not list((settings.spool_dir / "queue").iterdir()), 10, "empty spool")


def corrupt_deflate_zip(member: str) -> bytes:
    """A zip whose directory is sound but whose one member's deflate data is not."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, b"quarterly figures " * 200)
    data = bytearray(buffer.getvalue())
    # The first byte of the deflate stream, after the 30-byte local header and the name:
    # block type 3, which no deflate stream may use.
    data[30 + len(member)] = 0xFF
    return bytes(data)


def test_a_zip_with_corrupt_deflate_data_is_unscannable_not_a_crash(post_queue, settings):
    from tasks.crashes.store import CrashStore

    crashes = CrashStore(redisauth.connect(settings), settings.crashdump_dir)
    builtin_crashes = [d for d in crashes.records() if d["plugin"].get("name") == "builtin"]
    attachment = corrupt_deflate_zip("figures.txt")
    message = make_message(attachment=attachment, X_Test_Id="corrupt-zip")
    assert send(message, post_queue.smtp_port).code == 250
    quarantined = post_queue.quarantine_dir

    def entry() -> dict | None:
        for path in quarantined.glob("*.json"):
            meta = json.loads(path.read_text())
            if b"corrupt-zip" in path.with_suffix(".eml").read_bytes():
                return meta
        return None

    wait_for(lambda: entry() is not None, 60, "the corrupt zip quarantined")
    meta = entry()
    assert meta["reason"] == "unscannable"
    [builtin] = [v for v in meta["verdicts"]["av"]["verdicts"] if v["engine"] == "builtin"]
    assert builtin["unscannable"]
    assert "figures.txt" in builtin["detail"]
    assert "corrupt" in builtin["detail"]
    after = [d for d in crashes.records() if d["plugin"].get("name") == "builtin"]
    assert after == builtin_crashes  # no crashdump: the engine did not fail
    assert find_delivered(post_queue.maildir, b"corrupt-zip") == []


def test_scan_command_on_eicar_and_gtube(stack, settings, tmp_path):
    eicar = tmp_path / "eicar.eml"
    eicar.write_bytes(make_message(attachment=EICAR).as_bytes())
    gtube = tmp_path / "gtube.eml"
    gtube.write_bytes(make_message(body=GTUBE).as_bytes())
    virus = mailscan("scan", str(eicar))
    spam = mailscan("scan", "--json", str(gtube))
    assert virus.returncode == 1
    assert "infected" in virus.stdout
    assert "EICAR" in virus.stdout
    verdicts = json.loads(spam.stdout)
    assert spam.returncode == 1
    assert verdicts["spam"]["status"] == "spam"
    assert "GTUBE" in verdicts["spam"]["verdicts"][0]["rules"]
    assert verdicts["av"]["status"] == "clean"


def test_status_reports_both_pools_from_the_workers(stack, settings):
    status = mailscan("status", "--json")
    report = json.loads(status.stdout)
    for pool in ("av", "spam"):
        workers = report["pools"][pool]["workers"]
        assert workers[f"{pool}@{settings.hostname}"]["concurrency"] == 2


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("MAILSCAN_AV_PLUGINS", "clamav,norton", "unknown plugin 'norton'"),
        ("MAILSCAN_REDIS_URL", "redis://127.0.0.1:1/0", "cannot reach Redis"),
        ("MAILSCAN_SMTP_PORT", "70000", "MAILSCAN_SMTP_PORT='70000'"),
    ],
)
def test_bad_configuration_stops_start_up_with_one_clear_line(variable, value, says):
    result = mailscan("serve", env={**os.environ, variable: value})
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_stops_start_up_clearly(stack, settings):
    result = mailscan("serve")  # the session's front already holds the port
    assert result.returncode == 2
    assert f"cannot listen for SMTP on 127.0.0.1:{settings.smtp_port}" in result.stderr
