"""CSRF protection: one random token per session, required on every POST, in the form field
``csrf_token`` or the ``X-CSRF-Token`` header (for requests made by the page's JavaScript).
The session cookie is also SameSite=strict; the token is what holds if a browser ignores it."""

from __future__ import annotations

import hmac
import secrets

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

FIELD = "csrf_token"
HEADER = "x-csrf-token"


def token(request: Request) -> str:
    """This session's token, made on first use (also for the login form, before login)."""
    if FIELD not in request.session:
        request.session[FIELD] = secrets.token_urlsafe(32)
    return str(request.session[FIELD])


async def checked_form(request: Request) -> FormData:
    """The posted form, once its token matches the session's; else 403."""
    form = await request.form()
    sent = request.headers.get(HEADER) or form.get(FIELD) or ""
    expected = request.session.get(FIELD, "")
    if not (isinstance(sent, str) and expected and hmac.compare_digest(sent, expected)):
        raise HTTPException(403, "The form has expired or did not come from this console.")
    return form
