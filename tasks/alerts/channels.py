"""Where notices go: the webhook (a JSON POST) and the administrator's mailbox (plain text,
through the next hop the front relays to). Each raises AlertNotSent with one line saying
why; the URL is never in it (a webhook's URL often carries its token)."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import httpx

from tasks.alerts.ratelimit import Notice
from tasks.errors import AlertNotSent
from tasks.settings import Settings

# Short: a dispatcher run that waits on a dead endpoint holds back the other channel.
WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAIL_TIMEOUT_S = 20.0
CHANNELS = ("webhook", "mail")


def configured(settings: Settings) -> tuple[str, ...]:
    """The channels the settings name, in the order they are tried."""
    wanted = {"webhook": settings.alert_webhook, "mail": settings.alert_email}
    return tuple(channel for channel in CHANNELS if wanted[channel])


def send(channel: str, notice: Notice, settings: Settings) -> None:
    if channel == "webhook":
        post_webhook(settings.alert_webhook, notice)
    else:
        mail(notice, settings)


def post_webhook(url: str, notice: Notice) -> None:
    try:
        answer = httpx.post(url, json=notice.payload, timeout=WEBHOOK_TIMEOUT)
    except httpx.HTTPError as err:
        raise AlertNotSent(f"webhook not reached: {type(err).__name__}") from err
    if not answer.is_success:
        raise AlertNotSent(f"webhook answered {answer.status_code}")


def mail(notice: Notice, settings: Settings) -> None:
    relay = settings.relay
    message = _message(notice, settings)
    try:
        with smtplib.SMTP(relay.host, relay.port, timeout=MAIL_TIMEOUT_S) as client:
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as err:  # smtplib's errors are OSErrors too
        raise AlertNotSent(f"mail to {settings.alert_email} not sent via {relay}: {err}") from err


def _message(notice: Notice, settings: Settings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"mailscan <mailscan@{settings.hostname}>"
    message["To"] = settings.alert_email
    message["Subject"] = notice.subject
    message["Date"] = formatdate(time.time(), localtime=True)
    message["Message-ID"] = make_msgid("alert", domain=settings.hostname)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    message.set_content(notice.text)
    return message
