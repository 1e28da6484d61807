"""Where accepted mail goes: a local Maildir, or the next-hop SMTP host behind us.

Maildir delivery is idempotent: the file is named after the spool id, so a message that is
re-driven after a crash between delivery and spool removal is not delivered twice.
"""

from __future__ import annotations

import os
import secrets
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from mailserver.spool import Envelope, fsync_dir
from tasks.errors import MailscanError
from tasks.settings import Settings

# The Maildir copy is converted and written in pieces of this size (lf_pieces).
LF_PIECE_BYTES = 1024 * 1024


class DeliveryError(MailscanError):
    """The message could not be handed on. ``permanent`` tells a 5xx from a 4xx."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Delivery(Protocol):
    def deliver(
        self,
        entry_id: str,
        envelope: Envelope,
        message: bytes,
        first: bool = False,
        defer_sync: bool = False,
        top: bytes = b"",
    ) -> Path | None:
        """Hand on ``top + message``: ``top``, whole header lines put on top of the message,
        not joined to it (a message can be 25 MB). ``first``: this entry was never handed on
        before (a message whose sender is still connected), so there is no earlier delivery
        to look for.

        Durable on return, unless ``defer_sync``: then the folder returned (if any) must be
        fsynced before the message's spool entry goes."""


class MaildirDelivery:
    """One Maildir for all recipients: the stand-in for the mailbox server behind us."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def delivered(self, entry_id: str) -> bool:
        name = f"{entry_id}.mailscan"
        return (self.root / "new" / name).exists() or any((self.root / "cur").glob(name + ":*"))

    def deliver(
        self,
        entry_id: str,
        envelope: Envelope,
        message: bytes,
        first: bool = False,
        defer_sync: bool = False,
        top: bytes = b"",
    ) -> Path | None:
        # The look for an earlier copy lists cur/, which grows with the mailbox: only for
        # re-driven and released entries, which may have been delivered before.
        if not first and self.delivered(entry_id):
            return self._durable(defer_sync)  # by an attempt whose rename may not be yet
        name = f"{entry_id}.mailscan"
        # A staging name of its own per attempt: two attempts at once must not write into
        # one file, and the rename into new/ keeps at most one copy under the final name.
        staging = self.root / "tmp" / f"{name}.{secrets.token_hex(4)}"
        with open(staging, "wb") as handle:
            handle.write(f"Return-Path: <{envelope.mail_from}>\n".encode())
            handle.write(top.replace(b"\r\n", b"\n"))  # whole lines: no CRLF cut at the joint
            handle.writelines(lf_pieces(message))
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(staging, self.root / "new" / name)
        return self._durable(defer_sync)

    def _durable(self, defer_sync: bool) -> Path | None:
        """The rename into new/ is durable once new/ is fsynced; it must be before the spool
        entry goes, or a crash could lose the message. Until then a crash leaves the entry,
        which is re-driven and delivered once (the file's content is durable already)."""
        if defer_sync:
            return self.root / "new"
        fsync_dir(self.root / "new")
        return None


def lf_pieces(message: bytes, piece_bytes: int = LF_PIECE_BYTES) -> Iterator[bytes]:
    """``message`` with its CRLF line ends made LF, as Maildir files have them, in pieces of
    about ``piece_bytes``: a 25 MB message is converted without a second 25 MB copy. Each
    piece ends after an LF where it can, and never between a CR and its LF."""
    start, size = 0, len(message)
    while start < size:
        end = message.rfind(b"\n", start, start + piece_bytes) + 1
        if end <= start:  # no line end in reach: a piece of one long line
            end = min(size, start + piece_bytes)
            if start < end - 1 < size - 1 and message[end - 1 : end] == b"\r":
                end -= 1  # the CR goes with the next piece, where its LF may be
        yield message[start:end].replace(b"\r\n", b"\n")
        start = end


class RelayDelivery:
    """Hands the message to the next hop over SMTP, as a content filter behind an MTA does."""

    def __init__(self, host: str, port: int, timeout_s: float = 60.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s

    def deliver(
        self,
        entry_id: str,
        envelope: Envelope,
        message: bytes,
        first: bool = False,
        defer_sync: bool = False,
        top: bytes = b"",
    ) -> Path | None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as client:
                # smtplib makes its own copies to send: one more costs little here.
                data = top + message
                refused = client.sendmail(envelope.mail_from, list(envelope.rcpt_tos), data)
        except smtplib.SMTPResponseException as err:
            raise DeliveryError(f"next hop said {err.smtp_code}", err.smtp_code >= 500) from err
        except smtplib.SMTPRecipientsRefused as err:
            codes = [code for code, _ in err.recipients.values()]
            raise DeliveryError("next hop refused every recipient", min(codes) >= 500) from err
        except (TimeoutError, OSError, smtplib.SMTPException) as err:
            raise DeliveryError(f"next hop {self.host}:{self.port} unreachable: {err}") from err
        if refused:
            # Some recipients were refused: the rest have it; say so, but do not resend.
            raise DeliveryError(f"next hop refused {len(refused)} recipients", permanent=True)
        return None  # the next hop has it: nothing of ours to sync


def delivery_for(settings: Settings) -> Delivery:
    if settings.delivery == "relay":
        return RelayDelivery(settings.relay.host, settings.relay.port)
    return MaildirDelivery(settings.maildir)
