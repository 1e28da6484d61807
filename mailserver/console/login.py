"""Logging in and out. A new server-side session on every login (no fixation), the time it
began (the next-start dialog counts incidents from there), one answer for every failure,
and one for every try that comes before its wait is over, whether the name exists or not.
The form tells a visitor nothing about the server: not whether administrators exist,
nor where they are kept."""

from __future__ import annotations

import asyncio
import math
import time

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailserver.console import csrf
from mailserver.console.access import safe_next, session_id, signed_in
from mailserver.console.site import console_of, render

FAILED = "Wrong name or password."
TOO_MANY = "Too many failed logins. Try again in {seconds} seconds."


async def login_form(request: Request) -> Response:
    if await signed_in(request):
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return await _form(request, request.query_params.get("next"))


async def _form(
    request: Request,
    next_path: str | None,
    error: str = "",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    context = {"error": error, "next": safe_next(next_path)}
    answer = await render(request, "login.html", context, status_code)
    answer.headers.update(headers or {})
    return answer


async def login(request: Request) -> Response:
    form = await csrf.checked_form(request)
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    next_path = str(form.get("next", ""))
    console = console_of(request)
    address = request.client.host if request.client else ""
    wait_s = await asyncio.to_thread(console.throttle.wait_s, address, name)
    if wait_s > 0:
        seconds = math.ceil(wait_s)
        return await _form(request, next_path, TOO_MANY.format(seconds=seconds), 429,
                           {"Retry-After": str(seconds)})  # fmt: skip
    if not await console.passwords.check(name, password):
        await asyncio.to_thread(console.throttle.failed, address, name)
        return await _form(request, next_path, FAILED, status_code=401)
    await asyncio.to_thread(console.throttle.succeeded, name)
    started = await asyncio.to_thread(console.sessions.begin, name)
    request.session.clear()
    request.session.update({"sid": started, "started": time.time()})
    csrf.token(request)
    return RedirectResponse(safe_next(next_path), status_code=303)


async def logout(request: Request, _: FormData) -> Response:
    if ending := session_id(request):
        await asyncio.to_thread(console_of(request).sessions.end, ending)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
