"""A crash report leaks nothing of the mail, through the real path: a plugin fails in the real
runner under the crash guard with tracebacks, messages, notes and source lines full of a
message's secrets (tests/mail_secrets.py); the record goes through the real crash store into
a real Redis; the console's assist answers "send" and queues the report.

The default report holds none of the secrets, in any form. The details hold none of the
forms the scrubber claims; what it cannot know (bare words) only the default keeps here."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailserver.console.assist import Assist
from tasks import runner
from tasks.crashes.scrub import scrubber_for
from tasks.crashes.store import CrashStore
from tasks.errors import ScanError
from tasks.guards.crashes import CrashGuard
from tasks.plugins.command import CommandPlugin
from tasks.wire.jobids import job_ids
from tests.conftest import TEST_ROOT
from tests.mail_secrets import (
    Secrets,
    attachments,
    bare_words,
    canonical,
    free_text,
    host_names,
    locals_with_secrets,
    scanner_output,
)

GENERATED = TEST_ROOT / "generated-plugins"
ERRORS = (RuntimeError, ValueError, KeyError, ScanError, SoftTimeLimitExceeded)


@dataclasses.dataclass
class Failure:
    """How the plugin fails: the error it raises, with its arguments and notes, the value in
    the source line that calls it, the scanner output behind it, the worker's host name."""

    error: type[BaseException]
    args: tuple[Any, ...]
    notes: list[str]
    source_value: str
    scanner: bytes | None
    worker_host: str


@st.composite
def failures(draw: st.DrawFn) -> tuple[Failure, Secrets]:
    secrets = Secrets()
    texts = [draw(free_text(secrets)) for _ in range(draw(st.integers(1, 3)))]
    args = (texts[0], *(draw(locals_with_secrets(secrets)) for _ in range(draw(st.integers(0, 2)))))
    notes = [*texts[1:], draw(bare_words(secrets))]
    scanner = None
    if draw(st.booleans()):
        attachment = draw(attachments)
        secrets.add("attachment", attachment)
        scanner = scanner_output(attachment)
    host = draw(host_names)
    secrets.add("host", host)
    failure = Failure(draw(st.sampled_from(ERRORS)), args, notes,
                      draw(locals_with_secrets(secrets)), scanner, f"av@{host}")  # fmt: skip
    return failure, secrets


def raiser(failure: Failure, settings_: Any) -> Callable[[bytes, Any], None]:
    def fail(message: bytes, value: Any) -> None:
        error = failure.error(*failure.args)
        if failure.scanner is not None:  # the command plugin's own words for a failed scanner
            error = _scanner_error(failure.scanner, settings_)
        for note in failure.notes:
            error.add_note(note)
        raise error

    return fail


def _scanner_error(output: bytes, settings_: Any) -> ScanError:
    plugin = CommandPlugin(dataclasses.replace(settings_, command_scanner=("scanner",)), "av")
    try:
        plugin._read(subprocess.CompletedProcess(["scanner"], 2, b"", output), 0.0)
    except ScanError as error:
        # Raised again by the generated plugin, whose frames then make the signature.
        return error.with_traceback(None)
    raise AssertionError("the command plugin took exit status 2 for a verdict")


def plugin_module(source_value: str) -> tuple[Any, str]:
    """A plugin's scan function in a file of its own, whose source line (shown in the
    traceback) holds ``source_value``; its name makes the failure's signature its own."""
    name = f"scan_{uuid.uuid4().hex}"
    GENERATED.mkdir(parents=True, exist_ok=True)
    path = GENERATED / f"{name}.py"
    path.write_text(f"def {name}(message, fail):\n    fail(message, {source_value})\n")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name), name


@pytest.fixture
def store_process(pool_process, guard_redis, tmp_path):
    """A pool process whose crash guard saves into the real crash store, on a real Redis."""
    pool_process.crashes = CrashStore(guard_redis, tmp_path)
    return pool_process


def crash_and_report(pool_process, failure: Failure) -> tuple[dict, dict, str]:
    """The plugin fails in the real runner; return the report queued by "send", the report
    with details, and the generated function's name."""
    from tasks.celery import app

    scan, name = plugin_module(failure.source_value)
    engine = pool_process.start("av", CrashGuard())
    fail = raiser(failure, pool_process.settings)
    engine.scan = lambda message: scan(message, fail)
    store: CrashStore = pool_process.crashes
    before, ref = set(store.ids()), pool_process.store()
    # A freeze: the runner records it and lets Celery have it.
    with contextlib.suppress(SoftTimeLimitExceeded):
        runner.scan("av", ref, pool_process.settings, job_ids(ref["blob"])["av"],
                    failure.worker_host, app.backend)  # fmt: skip
    [dump_id] = set(store.ids()) - before
    queued: list[dict] = []
    settings_ = dataclasses.replace(pool_process.settings, assist_url="https://vendor.test/r")
    assist = Assist(settings_, store, scrubber_for(b"s" * 32),
                    lambda report, _: queued.append(report), TEST_ROOT / "reports")  # fmt: skip
    detailed = assist.payload(assist.records([dump_id]), details=True)
    assist.answer([dump_id], send=True, by="admin")
    [report] = queued
    return report, detailed, name


def strings_of(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *strings_of(v))]
    if isinstance(value, list):
        return [s for item in value for s in strings_of(item)]
    return [value] if isinstance(value, str) else []


def leaks(report: dict, secrets: Secrets, claimed_only: bool) -> list[str]:
    """The secrets found in the report. With ``claimed_only``, those written in a form the
    scrubber claims, and not part of a secret it cannot know (the same word may be both):
    bare words run together once the spaces are gone, and may spell a claimed one."""
    texts = [canonical(s) for s in strings_of(report)]
    unknowable = [p.needle for p in secrets.planted if not p.claimed]
    if not claimed_only:
        return [f"{p.kind} {p.needle!r}" for p in secrets.planted if _in(p.needle, texts, [])]
    looked_for = [p for p in secrets.planted if p.claimed]
    return [f"{p.kind} {p.needle!r}" for p in looked_for if _in(p.needle, texts, unknowable)]


def _in(needle: str, texts: list[str], unknowable: list[str]) -> bool:
    """Whether ``needle`` is in one of ``texts`` somewhere that overlaps no unknowable word."""
    return any(_found_outside(needle, text, unknowable) for text in texts)


def _found_outside(needle: str, text: str, unknowable: list[str]) -> bool:
    covered = [False] * len(text)
    for word in unknowable:
        for start in _starts(word, text):
            covered[start : start + len(word)] = [True] * len(word)
    return any(not any(covered[s : s + len(needle)]) for s in _starts(needle, text))


def _starts(needle: str, text: str) -> list[int]:
    found, start = [], text.find(needle)
    while needle and start != -1:
        found.append(start)
        start = text.find(needle, start + 1)
    return found


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(failures())
def test_no_secret_of_a_message_survives_in_a_crash_report(store_process, generated):
    failure, secrets = generated
    report, detailed, name = crash_and_report(store_process, failure)
    [summary] = report["crashdumps"]
    assert any(f":{name}:2" in frame for frame in summary["frames"])  # where it failed
    raised = ScanError if failure.scanner else failure.error
    assert summary["exception"]["type"] == raised.__name__
    assert "details" not in summary
    assert not [s for s in strings_of(report) if "@" in canonical(s)]
    assert leaks(report, secrets, claimed_only=False) == []
    assert leaks(detailed, secrets, claimed_only=True) == []
