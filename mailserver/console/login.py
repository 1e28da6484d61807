"""Logging in and out. A new session on every login (no fixation), the time it began (the
next-start dialog counts incidents from there), and one answer for every failure."""

from __future__ import annotations

import time

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailserver.console import csrf
from mailserver.console.access import safe_next, user
from mailserver.console.auth import check_login
from mailserver.console.site import console_of, render

FAILED = "Wrong name or password."


async def login_form(request: Request) -> Response:
    if user(request):
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return await _form(request, request.query_params.get("next"))


async def _form(
    request: Request, next_path: str | None, error: str = "", status_code: int = 200
) -> Response:
    users = console_of(request).users
    context = {
        "error": error,
        "next": safe_next(next_path),
        "no_users": not users.names(),
        "users_file": str(users.path),
    }
    return await render(request, "login.html", context, status_code)


async def login(request: Request) -> Response:
    form = await csrf.checked_form(request)
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    if not await check_login(console_of(request).users, name, password):
        return await _form(request, str(form.get("next", "")), FAILED, status_code=401)
    request.session.clear()
    request.session.update({"user": name, "started": time.time()})
    csrf.token(request)
    return RedirectResponse(safe_next(str(form.get("next", ""))), status_code=303)


async def logout(request: Request, _: FormData) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
