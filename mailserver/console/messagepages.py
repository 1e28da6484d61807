"""The message log in the console: a search page, paged, and a page per message saying why
it went where it went (engines, spam rules with SpamAssassin's descriptions, the time of
each step), with links to its quarantine entry and crashdumps, and the learning buttons.

The store's calls block (SQLAlchemy): they run off the event loop, as all blocking work
in the console does. A database that does not answer is said on the page, not a 500."""

from __future__ import annotations

import asyncio
import calendar
import functools
import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import FormData, QueryParams, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailserver.console import learning, quarantined, sarules
from mailserver.console.access import user
from mailserver.console.site import console_of, render
from mailserver.messagelog.crashlinks import with_crashdumps
from mailserver.messagelog.query import MAX_PER_PAGE, PER_PAGE, Criteria
from mailserver.messagelog.record import VERDICTS, MessageRecord
from mailserver.messagelog.store import MessageStore
from tasks.errors import LearnFailed

FIELDS = ("from", "to", "message_id", "subject", "client", "verdict", "since", "until")
TIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")
SPOOL_ID_MAX = 128


async def message_search(request: Request) -> Response:
    params = request.query_params
    asked = {name: params.get(name, "").strip() for name in FIELDS}
    page = _number(params, "page", 1)
    per_page = min(_number(params, "per_page", PER_PAGE), MAX_PER_PAGE)
    context: dict[str, Any] = {"asked": asked, "verdicts": VERDICTS, "page": page,
                               "per_page": per_page, "records": [], "error": ""}  # fmt: skip
    try:
        criteria = criteria_of(asked)
    except ValueError as err:
        return await render(request, "messages.html", context | {"error": str(err)}, 400)
    store = console_of(request).messages
    try:
        records, more = await asyncio.to_thread(_page, store, criteria, page, per_page)
    except SQLAlchemyError:
        context["error"] = "The message log's database does not answer; try again shortly."
        return await render(request, "messages.html", context, 503)
    context |= {"records": records,
                "previous": _link(params, page - 1) if page > 1 else "",
                "next": _link(params, page + 1) if more else ""}  # fmt: skip
    return await render(request, "messages.html", context)


def _page(
    store: MessageStore, criteria: Criteria, page: int, per_page: int
) -> tuple[list[MessageRecord], bool]:
    """One page and whether another follows: the first record after it, asked alone."""
    records = store.search(criteria, page, per_page)
    more = len(records) == per_page and bool(store.search(criteria, page * per_page + 1, 1))
    return records, more


def criteria_of(asked: dict[str, str]) -> Criteria:
    verdict = asked["verdict"]
    if verdict and verdict not in VERDICTS:
        raise ValueError(f"No such verdict {verdict!r}: one of {', '.join(VERDICTS)}.")
    return Criteria(
        mail_from=asked["from"], rcpt_to=asked["to"], message_id=asked["message_id"],
        client_ip=asked["client"], verdict=verdict, subject=asked["subject"],
        since=utc_time(asked["since"]), until=utc_time(asked["until"]),
    )  # fmt: skip


def utc_time(text: str) -> float | None:
    """A date and time the form sent (UTC, as the console shows times), as a Unix time."""
    if not text:
        return None
    for layout in TIME_FORMATS:
        try:
            return float(calendar.timegm(time.strptime(text, layout)))
        except ValueError:
            continue
    raise ValueError(f"{text!r} is no date and time (YYYY-MM-DD HH:MM, UTC).")


def _number(params: QueryParams, name: str, default: int) -> int:
    text = params.get(name, "")
    return max(1, int(text)) if text.isdigit() else default


def _link(params: QueryParams, page: int) -> str:
    return "/messages?" + str(QueryParams({**dict(params), "page": str(page)}))


async def message_page(request: Request) -> Response:
    console, spool_id = console_of(request), request.path_params["spool_id"]
    if len(spool_id) > SPOOL_ID_MAX:
        raise HTTPException(404, "The message log has no such message.")
    try:
        record = await asyncio.to_thread(console.messages.get, spool_id)
    except SQLAlchemyError:
        raise HTTPException(503, "The message log's database does not answer.") from None
    if record is None:
        raise HTTPException(404, "The message log has no such message.")
    record = await asyncio.to_thread(with_crashdumps, record, console.crashes)
    book = await asyncio.to_thread(sarules.installed, console.settings.spamd_config)
    context = {"r": record, "engines": engines(record), "rules": book.hits(record.rules()),
               "timeline": timeline(record.steps_ms),
               "quarantined": await _still_quarantined(request, record)}  # fmt: skip
    return await render(request, "message.html", context)


def engines(record: MessageRecord) -> list[dict[str, Any]]:
    """One row per engine of every pool; a pool without a verdict says so."""
    rows: list[dict[str, Any]] = []
    for pool, verdict in record.verdicts.items():
        if verdict is None:
            rows.append({"pool": pool, "engine": "", "status": "no verdict"})
            continue
        rows += [{"pool": pool, **engine} for engine in verdict.get("verdicts") or ()]
        if not verdict.get("verdicts"):
            rows.append({"pool": pool, "engine": "", "status": verdict.get("status", "?"),
                         "detail": verdict.get("reason") or ""})  # fmt: skip
    return rows


def timeline(steps_ms: dict[str, float]) -> list[dict[str, Any]]:
    """The steps in the order they happen, each with its share of the longest (a bar)."""
    order = ("spool", "enqueue", "queue", "scan", "delivery", "quarantine")
    ranked = sorted(steps_ms.items(), key=lambda kv: (_rank(kv[0], order), kv[0]))
    longest = max(steps_ms.values(), default=0.0) or 1.0
    return [{"step": step, "ms": ms, "share": round(100 * ms / longest)} for step, ms in ranked]


def _rank(step: str, order: tuple[str, ...]) -> int:
    head = step.split(".")[0]
    return order.index(head) if head in order else len(order)


async def message_confirm_spam(request: Request, form: FormData) -> Response:
    """ "Spam: confirm" for a delivered message: teach Bayes the uploaded copy as spam."""
    console, spool_id = console_of(request), request.path_params["spool_id"]
    record = await asyncio.to_thread(console.messages.get, spool_id[:SPOOL_ID_MAX])
    if record is None:
        raise HTTPException(404, "The message log has no such message.")
    upload = form.get("message")
    if not isinstance(upload, UploadFile):
        return _back(request, spool_id, "Nothing done: choose the message's file first.")
    # One byte past the cap is enough for the teacher to refuse it, and no more is read.
    copy = await upload.read(console.settings.max_message_bytes + 1)
    act = functools.partial(learning.confirm_delivered_spam, console.teacher, console.redis,
                            record.message_id, copy, spool_id, user(request) or "?")  # fmt: skip
    try:
        done = await asyncio.to_thread(act)
    except LearnFailed as err:
        return _back(request, spool_id, f"Nothing done: spamd did not learn it: {err}")
    return _back(request, spool_id, done)


def _back(request: Request, spool_id: str, text: str) -> Response:
    request.session["flash"] = {"text": text}
    return RedirectResponse(f"/messages/{spool_id}", status_code=303)


async def _still_quarantined(request: Request, record: MessageRecord) -> bool:
    """Its quarantine entry is there still (not released or deleted since)."""
    if not quarantined.QUARANTINE_ID.match(record.quarantine):
        return False
    root = console_of(request).quarantine.root
    return await asyncio.to_thread(lambda: (root / f"{record.quarantine}.eml").exists())
