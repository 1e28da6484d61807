"""The admin console: a Starlette application, server-rendered with Jinja2, a little JavaScript
for live updates over server-sent events. All routes are in the table below; each page is
wrapped by ``access.page`` (login) and each POST by ``access.action`` (login and CSRF)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailserver.console import assist_views, events, login, messagepages, pages
from mailserver.console.access import action, page
from mailserver.console.site import Console, open_console, render
from tasks.settings import Settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "mailscan_console"
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]  # fmt: skip


async def healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


ROUTES = [
    Route("/healthz", healthz),
    Route("/login", login.login_form, methods=["GET"]),
    Route("/login", login.login, methods=["POST"]),
    Route("/logout", action(login.logout), methods=["POST"]),
    Route("/", page(pages.home)),
    Route("/dashboard/live", page(pages.home_live)),
    Route("/events", page(events.stream)),
    Route("/crashdumps", page(pages.crashdump_list)),
    Route("/crashdumps/{dump_id}", page(pages.crashdump_page)),
    Route("/quarantine", page(pages.quarantine_list)),
    Route("/quarantine/{entry_id}", page(pages.quarantine_page)),
    Route("/quarantine/{entry_id}/release", action(pages.quarantine_release), methods=["POST"]),
    Route("/quarantine/{entry_id}/delete", action(pages.quarantine_delete), methods=["POST"]),
    Route("/quarantine/{entry_id}/not-spam", action(pages.quarantine_not_spam), methods=["POST"]),
    Route("/quarantine/{entry_id}/spam", action(pages.quarantine_confirm_spam), methods=["POST"]),
    Route("/messages", page(messagepages.message_search)),
    Route("/messages/{spool_id}", page(messagepages.message_page)),
    Route("/messages/{spool_id}/spam", action(messagepages.message_confirm_spam), methods=["POST"]),
    Route("/audit", page(pages.audit_page)),
    Route("/alerts", page(pages.alerts_page)),
    Route("/assist/dialog", page(assist_views.dialog)),
    Route("/assist/answer", action(assist_views.answer), methods=["POST"]),
    Route("/assist/later", action(assist_views.later), methods=["POST"]),
    Route("/assist/remember", action(assist_views.remember), methods=["POST"]),
    Route("/reports/{report_id}", page(assist_views.report_download)),
    Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
]


class SecurityHeaders:
    """Adds the headers above to every answer, static files and errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    context = {"status": error.status_code, "detail": error.detail}
    return await render(request, "error.html", context, error.status_code)


def build_app(console: Console) -> Starlette:
    session_key = hmac.new(console.secret, b"mailscan console sessions", hashlib.sha256)
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=session_key.hexdigest(),
            session_cookie=SESSION_COOKIE,
            # The server ends the session itself (sessions.py); the cookie need not outlive it.
            max_age=int(console.settings.console_session_max_s),
            same_site="strict",
            https_only=console.settings.console_secure_cookies,
        ),
    ]
    app = Starlette(routes=ROUTES, middleware=middleware,
                    exception_handlers={HTTPException: http_error})  # fmt: skip
    app.state.console = console
    return app


def serve(settings: Settings) -> None:
    """Run the console until SIGTERM or SIGINT (uvicorn handles both)."""
    console = open_console(settings)
    if not console.users.names():  # said here, never on the login page
        log.warning("no console administrator yet: add one with 'mailscan console adduser NAME'")
    app = build_app(console)
    config = uvicorn.Config(
        app,
        host=settings.console_host,
        port=settings.console_port,
        log_level="info",
        proxy_headers=False,
        server_header=False,  # a visitor learns nothing of what serves the console
        # Event streams never end by themselves: do not wait long for them at shutdown.
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run()
