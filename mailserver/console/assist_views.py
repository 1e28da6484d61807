"""The assist dialog's routes: the dialog itself (for the page's script), the answers, "Later",
the remembered choice per signature, and the download of a report saved for passing on."""

from __future__ import annotations

import asyncio

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from mailserver.console import csrf
from mailserver.console.access import safe_next, user
from mailserver.console.assist import Answer
from mailserver.console.site import console_of, dialog_context
from tasks.crashes import reports as crashreports

ANSWERS = {"send": True, "decline": False}


async def dialog(request: Request) -> Response:
    """The dialog due now for this session, or 204 when there is none."""
    context = await dialog_context(request)
    if context["dialog"] is None:
        return Response(status_code=204)
    context["csrf_token"] = csrf.token(request)
    context["path"] = safe_next(request.query_params.get("next"))
    return console_of(request).templates.TemplateResponse(request, "_assist_dialog.html", context)


async def answer(request: Request, form: FormData) -> Response:
    choice, remember = str(form.get("answer", "")), str(form.get("remember", "ask"))
    if choice not in ANSWERS or remember not in crashreports.CHOICES:
        raise HTTPException(400, "Unknown answer.")
    ids = [i for i in str(form.get("ids", "")).split(",") if i]
    console = console_of(request)
    # Only a ticked box adds the details: anything else, or nothing, sends the summary alone.
    details = form.get("details") == "yes"
    done = await asyncio.to_thread(
        console.assist.answer, ids, ANSWERS[choice], user(request) or "?", remember, details
    )
    request.session["flash"] = _flash(done)
    return RedirectResponse(safe_next(str(form.get("next", ""))), status_code=303)


def _flash(done: Answer) -> dict[str, str]:
    count = len(done.ids)
    if not count:
        return {"text": "Someone else already answered for these crashdumps."}
    what = f"report of {count} crashdump(s) ({'with' if done.details else 'without'} details)"
    if done.state == "queued":
        return {"text": f"The {what} is queued for sending."}
    if done.state == "saved":
        report_id = done.report_file.name if done.report_file else ""
        report_id = report_id.removeprefix("crash-report-").removesuffix(".json")
        return {
            "text": f"No endpoint is configured: the {what} was saved.",
            "link": f"/reports/{report_id}",
            "link_text": "Download it to pass it on",
        }
    return {"text": f"{count} crashdump(s) will not be sent."}


async def later(request: Request, form: FormData) -> Response:
    """Put the dialog off: it comes back with the next incident (or the next session)."""
    try:
        newest = float(str(form.get("newest", "0")))
    except ValueError:
        raise HTTPException(400, "Bad request.") from None
    request.session["assist_dismissed"] = max(newest, request.session.get("assist_dismissed", 0))
    return RedirectResponse(safe_next(str(form.get("next", ""))), status_code=303)


async def remember(request: Request, form: FormData) -> Response:
    signature, choice = str(form.get("signature", "")), str(form.get("choice", ""))
    if choice not in crashreports.CHOICES or not signature.isalnum():
        raise HTTPException(400, "Unknown choice.")
    client = console_of(request).redis
    await asyncio.to_thread(crashreports.remember, client, signature, choice, user(request) or "?")
    request.session["flash"] = {"text": f"Crashdumps of {signature}: {choice}."}
    return RedirectResponse("/crashdumps", status_code=303)


async def report_download(request: Request) -> Response:
    path = console_of(request).assist.report_file(request.path_params["report_id"])
    if path is None:
        raise HTTPException(404, "No such report.")
    return FileResponse(path, media_type="application/json", filename=path.name)
