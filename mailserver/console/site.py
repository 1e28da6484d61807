"""The console's collaborators, built once at start and handed to the app (so tests can build
their own), and how a page is rendered: every page carries the user, the CSRF token and,
when one is due, the assist dialog."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from mailserver.console import csrf
from mailserver.console.assist import Assist, PendingGroup, payload_text
from mailserver.console.auth import PasswordCheck, UserFile, console_dir, console_secret
from mailserver.console.dashboard import PoolStatus
from mailserver.console.learning import Teacher
from mailserver.console.sessions import Sessions
from mailserver.console.throttle import LoginThrottle
from mailserver.front.delivery import Delivery, delivery_for
from mailserver.front.quarantine import Quarantine
from mailserver.messagelog.store import MessageStore
from tasks import redisauth
from tasks.crashes.scrub import scrubber_for
from tasks.crashes.store import CrashStore
from tasks.settings import Settings
from tasks.wire.keys import ASSIST_STATE_KEY, CRASHDUMP_INDEX, UPLOAD_TASK

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class Console:
    settings: Settings
    secret: bytes
    redis: redis.Redis
    crashes: CrashStore
    assist: Assist
    users: UserFile
    passwords: PasswordCheck
    sessions: Sessions
    throttle: LoginThrottle
    quarantine: Quarantine
    delivery: Delivery
    teacher: Teacher
    messages: MessageStore
    status: PoolStatus
    templates: Jinja2Templates


def open_console(settings: Settings) -> Console:
    from tasks.celery import app as celery_app  # the console only sends, by task name

    def send_task(report: dict[str, Any], by: str) -> None:
        celery_app.send_task(UPLOAD_TASK, args=[report, by])

    secret = console_secret(settings)
    client = redisauth.connect(settings, socket_timeout=5, socket_connect_timeout=3)
    crashes = CrashStore(client, settings.crashdump_dir)
    reports = console_dir(settings) / "reports"
    assist = Assist(settings, crashes, scrubber_for(secret), send_task, reports)
    users = UserFile(settings.console_users_file)
    sessions = Sessions(client, users, settings.console_session_max_s)
    return Console(
        settings, secret, client, crashes, assist, users, PasswordCheck(users), sessions,
        LoginThrottle(client), Quarantine(settings.quarantine_dir), delivery_for(settings),
        Teacher(settings, celery_app), MessageStore.from_settings(settings), PoolStatus(settings),
        _templates(),
    )  # fmt: skip


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["when"] = when
    return templates


def when(ts: Any) -> str:
    if ts in (None, ""):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(ts)))


def console_of(request: Request) -> Console:
    return request.app.state.console


def crash_fingerprint(client: redis.Redis) -> str:
    """Changes when a crashdump arrives or is decided: the page's script then asks whether
    a dialog is due. Cheap enough for every open console every second."""
    with client.pipeline(transaction=False) as pipe:
        pipe.zcard(CRASHDUMP_INDEX).zrange(CRASHDUMP_INDEX, -1, -1, withscores=True)
        count, newest, decided = pipe.hlen(ASSIST_STATE_KEY).execute()
    return f"{count}:{newest[0][1] if newest else 0}:{decided}"


async def due_dialog(request: Request) -> tuple[PendingGroup, int] | None:
    """The crashdump group to ask about now, and how many groups wait in all. Immediate
    mode: any undecided incident not put off with "Later". Next-start mode: only those
    that happened before this console session began."""
    console = console_of(request)
    newer_than = float(request.session.get("assist_dismissed", 0.0))
    older_than = None
    if console.settings.assist_prompt == "next-start":
        older_than = float(request.session.get("started", 0.0))
    groups = await asyncio.to_thread(console.assist.pending, newer_than, older_than)
    return (groups[0], len(groups)) if groups else None


async def dialog_context(request: Request) -> dict[str, Any]:
    due = await due_dialog(request)
    if due is None:
        return {"dialog": None}
    group, waiting_groups = due
    assist = console_of(request).assist
    report = await asyncio.to_thread(assist.payload, group.records)
    added = await asyncio.to_thread(assist.added_details, group.records)
    return {
        "dialog": group,
        "dialog_payload": payload_text(report),
        "dialog_details": payload_text(added),
        "dialog_groups": waiting_groups,
        "dialog_endpoint": bool(console_of(request).settings.assist_url),
        "dialog_choice": console_of(request).assist.choices().get(group.signature, "ask"),
    }


async def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    console = console_of(request)
    base = {
        "user": getattr(request.state, "user", None),
        "csrf_token": csrf.token(request),
        "flash": request.session.pop("flash", None),
        "prompt": console.settings.assist_prompt,
        "crash_state": "",
        "path": request.url.path,
    }
    if base["user"]:  # nothing about crashes for a visitor who has not logged in
        base["crash_state"] = await asyncio.to_thread(crash_fingerprint, console.redis)
        base |= await dialog_context(request)
    return console.templates.TemplateResponse(request, template, base | context, status_code)
