"""Delivery status notifications (RFC 3464) for mail mailscan gives up on in relay mode:
a multipart/report to the envelope sender, sent with an empty sender through the next hop,
as an MTA bounces. Never to an empty sender: a bounce of a bounce could loop."""

from __future__ import annotations

import email.utils
import logging
import re
import secrets
import smtplib
from dataclasses import dataclass

from mailserver.front.fieldtext import field_text
from mailserver.front.spool import SpoolEntry
from tasks.wire.blobs import head_of

log = logging.getLogger(__name__)
_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True)
class Failure:
    """Why one recipient will not get the message: the reply code and its text."""

    code: int
    text: str

    @property
    def status(self) -> str:
        """The enhanced status code (RFC 3463) of the reply, or its class's generic one."""
        found = _ENHANCED.search(self.text)
        return found.group(1) if found else f"{str(self.code)[0]}.0.0"

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def report(entry: SpoolEntry, failed: dict[str, Failure], hostname: str) -> bytes:
    """The DSN for the recipients in ``failed``: an explanation, the machine-readable
    status per recipient, and the original message's header block (never its body)."""
    boundary = f"mailscan-dsn-{secrets.token_hex(8)}"
    parts = [
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + _explanation(failed, hostname),
        b"Content-Type: message/delivery-status\r\n\r\n" + _status(entry, failed, hostname),
        b"Content-Type: text/rfc822-headers\r\n\r\n" + _ended(head_of(entry.content)),
    ]
    head = (
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
        f"To: <{one_line(entry.envelope.mail_from)}>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {email.utils.formatdate()}\r\n"
        f"Message-ID: <{entry.id}.{secrets.token_hex(4)}@{hostname}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
    ).encode()
    body = b"".join(b"\r\n--" + boundary.encode() + b"\r\n" + part for part in parts)
    return head + body + b"\r\n--" + boundary.encode() + b"--\r\n"


def due(entry: SpoolEntry) -> bool:
    """A DSN goes to a real sender only: never to ``<>`` (that is a bounce itself, which
    aiosmtpd hands over with its brackets)."""
    return entry.envelope.mail_from not in ("", "<>")


class DsnSender:
    """Sends DSNs through the next hop of relay mode."""

    def __init__(self, host: str, port: int, hostname: str, timeout_s: float = 60.0) -> None:
        self.host, self.port, self.hostname, self.timeout_s = host, port, hostname, timeout_s

    def send(self, entry: SpoolEntry, failed: dict[str, Failure]) -> str:
        """What became of the DSN, for the dead letter's record: it is tried once, and a
        failure is logged, not retried (the dead letter itself raises the alarm)."""
        said = self.to_sender(entry, report(entry, failed, self.hostname), "DSN")
        if said == "sent":
            log.info("message %s: DSN sent to its sender for %d recipient(s)",
                     entry.id, len(failed))  # fmt: skip
        return said

    def to_sender(self, entry: SpoolEntry, content: bytes, what: str) -> str:
        """Send ``content`` to the entry's envelope sender, from the empty sender; once."""
        if not due(entry):
            return "not due: empty sender"
        sender = entry.envelope.mail_from
        if not sender.isascii() or "\r" in sender or "\n" in sender:
            return "not sent: the sender's address cannot be sent to"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as client:
                client.sendmail("", [sender], content)
        except (OSError, smtplib.SMTPException) as err:
            log.warning("message %s: %s to its sender not sent: %s", entry.id, what, err)
            return f"not sent: {err}"
        return "sent"


def _explanation(failed: dict[str, Failure], hostname: str) -> bytes:
    lines = [
        f"This is the mail system at host {hostname}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        "",
        *(f"<{one_line(rcpt)}>: {one_line(str(failure))}" for rcpt, failure in failed.items()),
    ]
    return "\r\n".join(lines).encode("ascii", "replace") + b"\r\n"


def _status(entry: SpoolEntry, failed: dict[str, Failure], hostname: str) -> bytes:
    arrival = email.utils.formatdate(entry.envelope.received_at or None)
    fields = [f"Reporting-MTA: dns; {hostname}", f"Arrival-Date: {arrival}", ""]
    for rcpt, failure in failed.items():
        fields += [
            f"Final-Recipient: rfc822; {one_line(rcpt)}",
            "Action: failed",
            f"Status: {failure.status}",
            f"Diagnostic-Code: smtp; {one_line(str(failure))}",
            "",
        ]
    return "\r\n".join(fields).encode("ascii", "replace") + b"\r\n"


def one_line(text: str) -> str:
    """One header line's worth of ``text``: nothing may break out of its field."""
    return field_text(re.sub(r"[\r\n]+", " ", text), 500).encode("ascii", "replace").decode()


def _ended(block: bytes) -> bytes:
    return block if block.endswith(b"\n") else block + b"\r\n"
