"""Who may see what: every page and action needs a live session on the server, and every
action a valid CSRF token. Routes are wrapped here, in one place, so none can forget it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailserver.console import csrf
from mailserver.console.site import console_of

Page = Callable[[Request], Awaitable[Response]]
Action = Callable[[Request, FormData], Awaitable[Response]]


def session_id(request: Request) -> str | None:
    return request.session.get("sid")


async def signed_in(request: Request) -> str | None:
    """The administrator of this request's session, if it is live on the server; a cookie
    of a session that ended is dropped."""
    found = session_id(request)
    name = await asyncio.to_thread(console_of(request).sessions.who, found) if found else None
    if found and name is None:
        request.session.clear()
    request.state.user = name
    return name


def user(request: Request) -> str | None:
    """The administrator, once ``signed_in`` has looked the session up."""
    return getattr(request.state, "user", None)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path if request.method == "GET" else "/"
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def page(handler: Page) -> Page:
    """A GET page for logged-in administrators only."""

    @wraps(handler)
    async def guarded(request: Request) -> Response:
        if not await signed_in(request):
            return to_login(request)
        return await handler(request)

    return guarded


def action(handler: Action) -> Page:
    """A POST for logged-in administrators, with the session's CSRF token."""

    @wraps(handler)
    async def guarded(request: Request) -> Response:
        if not await signed_in(request):
            return to_login(request)
        return await handler(request, await csrf.checked_form(request))

    return guarded


def safe_next(target: str | None, default: str = "/") -> str:
    """Only a path on this console: never an open redirect to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default
