"""The alerts an administrator must hear of, and where they are sent."""

from __future__ import annotations

from dataclasses import dataclass

from tasks import setting_parsers as parse
from tasks.settings.declare import setting


@dataclass(frozen=True)
class AlertSettings:
    """The ``Alerts`` section of the settings."""

    alert_webhook: str = setting(
        "", parse.webhook_url,
        "alerts (a virus found, a banned attachment, a circuit breaker opened or closed, a new "
        "crash group, a corrupt spool entry, a dead-lettered message) are sent to this URL "
        "as a JSON POST, retried with a growing pause when it fails; never with a message's "
        "body or subject. Unset: not sent there",
        shown="unset", section="Alerts", mask=parse.url_shown,
    )  # fmt: skip
    alert_email: str = setting(
        "", parse.mail_address,
        "alerts are mailed to this address (plain text), through the next hop "
        "`MAILSCAN_RELAY`, whatever `MAILSCAN_DELIVERY` says. Unset: not mailed",
        shown="unset",
    )  # fmt: skip
    alert_every_s: float = setting(
        300.0, parse.seconds,
        "at most one alert of each kind in this many seconds; those that follow are counted "
        "and sent as one digest when the window ends (\"12 more virus alerts: ...\")",
    )  # fmt: skip
    alert_send_every_s: float = setting(
        5.0, parse.seconds,
        "how often beat's dispatcher (on the ops worker) sends the alerts raised since its "
        "last run; a send that fails is tried again after one such period, then twice as "
        "long each time, eight times in all",
    )  # fmt: skip
