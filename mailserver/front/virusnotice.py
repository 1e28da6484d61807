"""The notice to the sender of a message that carried a virus, after the queue (the setting
``virus_sender_notice``, off by default): whom the message was for, the virus, what became of
it, and its Message-ID. Never the message, nor its header: the notice goes to an address the
virus may have forged, and must carry nothing of what it was sent."""

from __future__ import annotations

import email.utils
import logging
import secrets

from mailserver.front.dsn import DsnSender, one_line
from mailserver.front.outcomes import message_id_of
from mailserver.front.policy import Decision
from mailserver.front.spool import SpoolEntry

log = logging.getLogger(__name__)
FATES = {"quarantine": "kept in quarantine", "discard": "discarded"}
VIRUS = "virus "  # how a virus decision's reason starts (mailserver/front/policy.py)


def tell_sender_of_virus(
    dsn: DsnSender, entry: SpoolEntry, decision: Decision, hostname: str
) -> None:
    """After the queue, when the setting asks for it: a decision on a virus tells the
    sender, through the relay, from the empty sender."""
    if not decision.reason.startswith(VIRUS):
        return
    virus = decision.reason.removeprefix(VIRUS)
    said = dsn.to_sender(entry, notice(entry, virus, decision.action, hostname), "virus notice")
    log.info("message %s: virus notice to its sender: %s", entry.id, said)


def notice(entry: SpoolEntry, virus: str, action: str, hostname: str) -> bytes:
    message_id = message_id_of(entry.content) or "(none)"
    lines = [
        f"This is the mail system at host {hostname}.",
        "",
        "A message sent from your address was not delivered: it carried a virus.",
        "",
        f"Virus: {one_line(virus)}",
        f"Message-ID: {one_line(message_id)}",
        f"Recipients: {', '.join(one_line(r) for r in entry.envelope.rcpt_tos)}",
        f"What became of it: {FATES.get(action, action)}",
        "",
        "If you did not send it, your address was used by someone else; nothing needs doing.",
    ]
    head = (
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
        f"To: <{one_line(entry.envelope.mail_from)}>\r\n"
        "Subject: Virus found in a message from your address\r\n"
        f"Date: {email.utils.formatdate()}\r\n"
        f"Message-ID: <{entry.id}.{secrets.token_hex(4)}@{hostname}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
    )
    return (head + "\r\n" + "\r\n".join(lines) + "\r\n").encode("ascii", "replace")
