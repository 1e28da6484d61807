"""The console's pages: dashboard, crashdumps, quarantine, the audit log and the alerts."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailserver.console import dashboard, learning, quarantined
from mailserver.console.access import user
from mailserver.console.assist import DUMP_ID
from mailserver.console.site import console_of, render
from tasks.alerts import events as alerts
from tasks.crashes import reports as crashreports
from tasks.errors import DeliveryError, LearnFailed, NotQuarantined

ALERTS_SHOWN = 100


async def home(request: Request) -> Response:
    console = console_of(request)
    live = await dashboard.live(console.redis, console.settings, console.status)
    return await render(request, "dashboard.html", {"live": live})


async def home_live(request: Request) -> Response:
    """The part of the dashboard the page's script refreshes."""
    console = console_of(request)
    live = await dashboard.live(console.redis, console.settings, console.status)
    return console.templates.TemplateResponse(request, "_live.html", {"live": live})


async def crashdump_list(request: Request) -> Response:
    console = console_of(request)
    records, groups = await asyncio.to_thread(_crashdumps, console.crashes, console.assist)
    return await render(request, "crashdumps.html", {"records": records, "groups": groups})


def _crashdumps(crashes: Any, assist: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records = crashes.records()
    decided = assist.states([r["id"] for r in records])
    choices = assist.choices()
    for record in records:
        record["decision"] = decided[record["id"]]
    groups = crashes.groups()
    for group in groups:
        group["choice"] = choices.get(group["signature"], "ask")
        states = [r["decision"]["state"] for r in records if r["signature"] == group["signature"]]
        group["states"] = {s: states.count(s) for s in sorted(set(states))}
    return records, groups


async def crashdump_page(request: Request) -> Response:
    console = console_of(request)
    dump_id = request.path_params["dump_id"]
    dump = await asyncio.to_thread(console.crashes.get, dump_id) if DUMP_ID.match(dump_id) else None
    if dump is None:
        raise HTTPException(404, "No such crashdump.")
    decision = (await asyncio.to_thread(console.assist.states, [dump_id]))[dump_id]
    context = {"dump": dump, "decision": decision, "raw": json.dumps(dump, indent=2)}
    return await render(request, "crashdump.html", context)


async def quarantine_list(request: Request) -> Response:
    console = console_of(request)
    entries = await asyncio.to_thread(quarantined.listing, console.quarantine)
    return await render(request, "quarantine.html", {"entries": entries})


async def quarantine_page(request: Request) -> Response:
    console, entry_id = console_of(request), request.path_params["entry_id"]
    try:
        meta = await asyncio.to_thread(quarantined.metadata, console.quarantine, entry_id)
        headers = await asyncio.to_thread(quarantined.headers, console.quarantine, entry_id)
    except (NotQuarantined, FileNotFoundError):
        raise HTTPException(404, "No such message in the quarantine.") from None
    return await render(request, "quarantined.html", {"meta": meta, "headers": headers})


async def quarantine_release(request: Request, _: FormData) -> Response:
    console, entry_id = console_of(request), request.path_params["entry_id"]
    try:
        await asyncio.to_thread(quarantined.release, console.quarantine, console.delivery, entry_id)
    except (NotQuarantined, FileNotFoundError):
        raise HTTPException(404, "No such message in the quarantine.") from None
    except DeliveryError as err:
        return _back(request, "/quarantine", f"Not released: delivery failed: {err}")
    await asyncio.to_thread(_audit, request, "release", entry_id)
    return _back(request, "/quarantine", f"Message {entry_id} released and delivered.")


async def quarantine_delete(request: Request, _: FormData) -> Response:
    console, entry_id = console_of(request), request.path_params["entry_id"]
    try:
        await asyncio.to_thread(quarantined.remove, console.quarantine, entry_id)
    except NotQuarantined:
        raise HTTPException(404, "No such message in the quarantine.") from None
    await asyncio.to_thread(_audit, request, "delete", entry_id)
    return _back(request, "/quarantine", f"Message {entry_id} deleted.")


async def quarantine_not_spam(request: Request, _: FormData) -> Response:
    """Learn as ham and release, in one action (mailserver/console/learning.py)."""
    console, by = console_of(request), user(request) or "?"
    act = functools.partial(learning.not_spam, console.quarantine, console.delivery,
                            console.teacher, console.redis)  # fmt: skip
    return await _learn(request, lambda entry_id: act(entry_id, by))


async def quarantine_confirm_spam(request: Request, _: FormData) -> Response:
    """Learn as spam and delete, in one action (mailserver/console/learning.py)."""
    console, by = console_of(request), user(request) or "?"
    act = functools.partial(learning.confirm_spam, console.quarantine, console.teacher,
                            console.redis)  # fmt: skip
    return await _learn(request, lambda entry_id: act(entry_id, by))


async def _learn(request: Request, act: Callable[[str], str]) -> Response:
    try:
        done = await asyncio.to_thread(act, request.path_params["entry_id"])
    except (NotQuarantined, FileNotFoundError):
        raise HTTPException(404, "No such message in the quarantine.") from None
    except LearnFailed as err:
        return _back(request, "/quarantine", f"Nothing done: spamd did not learn it: {err}")
    except DeliveryError as err:
        return _back(request, "/quarantine", f"Learnt as ham, not released: delivery failed: {err}")
    return _back(request, "/quarantine", done)


def _audit(request: Request, what: str, entry_id: str) -> None:
    crashreports.audit(console_of(request).redis, f"quarantine {what}", user(request) or "?",
                       message=entry_id)  # fmt: skip


async def audit_page(request: Request) -> Response:
    console = console_of(request)
    entries = await asyncio.to_thread(crashreports.audit_log, console.redis)
    return await render(request, "audit.html", {"entries": entries})


async def alerts_page(request: Request) -> Response:
    """The latest alerts raised, newest first, whether or not they were sent anywhere."""
    console = console_of(request)
    latest = await asyncio.to_thread(alerts.latest, console.redis, ALERTS_SHOWN)
    settings = console.settings
    sent_to = ["the webhook"] if settings.alert_webhook else []
    sent_to += [settings.alert_email] if settings.alert_email else []
    context = {"alerts": latest, "sent_to": sent_to, "every_s": settings.alert_every_s}
    return await render(request, "alerts.html", context)


def _back(request: Request, target: str, text: str) -> Response:
    request.session["flash"] = {"text": text}
    return RedirectResponse(target, status_code=303)
