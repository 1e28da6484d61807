"""Where accepted mail goes: a local Maildir, or the next-hop SMTP host behind us.

Maildir delivery is idempotent: the file is named after the spool id, so a message that is
re-driven after a crash between delivery and spool removal is not delivered twice.

Raises ``DeliveryError`` (nobody has the message; ``permanent`` tells a 5xx from a 4xx) and
its ``RecipientsRefused`` (the next hop refused these recipients; the others have it), both
from the error tree in tasks/errors.py.
"""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from mailserver.front import headers
from mailserver.front.relaypool import RelayPool
from mailserver.front.spool import Envelope, fsync_dir
from tasks.errors import DeliveryError, RecipientsRefused
from tasks.settings import Settings
from tasks.wire.blobs import head_of

log = logging.getLogger(__name__)

# The Maildir copy is converted and written in pieces of this size (lf_pieces).
LF_PIECE_BYTES = 1024 * 1024
# A staging file in the Maildir's tmp/ older than this was left by a write that died with
# its process: a live write takes seconds, and another front sharing the Maildir may be in
# the middle of one.
STALE_STAGING_S = 3600.0
# What the next hop would answer for an address we cannot put into an SMTP command to it.
UNSENDABLE = (553, "5.6.7 address not representable for the next hop")
# Replies nobody took (a delivery whose outcome failed before it was logged) stop here.
MAX_KEPT_REPLIES = 10_000
NEEDS_SMTPUTF8 = (553, "5.6.7 message needs SMTPUTF8, which the next hop does not offer")


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

    def close(self) -> None:
        """Let go of what is kept between messages (connections to the next hop)."""


class MaildirDelivery:
    """One Maildir for all recipients: the stand-in for the mailbox server behind us."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.sweep_staging()

    def sweep_staging(self, older_than_s: float = STALE_STAGING_S) -> int:
        """Remove our staging files that writes which died with their process left in tmp/."""
        cutoff, swept = time.time() - older_than_s, 0
        for path in (self.root / "tmp").glob("*.mailscan.*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    swept += 1
            except FileNotFoundError:
                continue  # removed by whoever else sweeps
        if swept:
            log.warning("removed %d staging files failed Maildir writes left in tmp/", swept)
        return swept

    def close(self) -> None:
        pass  # nothing kept open between messages

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
        try:
            self._write(staging, envelope, message, top)
            os.rename(staging, self.root / "new" / name)
        except BaseException:
            staging.unlink(missing_ok=True)  # a failed attempt leaves nothing in tmp/
            raise
        return self._durable(defer_sync)

    @staticmethod
    def _write(staging: Path, envelope: Envelope, message: bytes, top: bytes) -> None:
        # The sender as the client sent it: 8-bit bytes without SMTPUTF8 arrive as
        # surrogates (aiosmtpd decodes with surrogateescape) and are written back as bytes.
        return_path = headers.return_path_of(envelope.mail_from) + "\n"
        with open(staging, "wb") as handle:
            handle.write(return_path.encode("utf-8", "surrogateescape"))
            handle.write(top.replace(b"\r\n", b"\n"))  # whole lines: no CRLF cut at the joint
            handle.writelines(lf_pieces(message))
            handle.flush()
            os.fsync(handle.fileno())

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
    """Hands the message to the next hop over SMTP, as a content filter behind an MTA does,
    on connections kept open between messages (``RelayPool``)."""

    def __init__(self, host: str, port: int, timeout_s: float = 60.0, keep: int = 4) -> None:
        self.host, self.port = host, port
        self.pool = RelayPool(host, port, timeout_s, keep)
        # The next hop's reply to each message, until the message log takes it.
        self._said: dict[str, str] = {}

    def reply_for(self, entry_id: str) -> str:
        """What the next hop answered to the message's data (its queue id, usually)."""
        return self._said.pop(entry_id, "")

    def close(self) -> None:
        self.pool.close()

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
            refused, said = self._hand_on(envelope, top + message)
        except smtplib.SMTPResponseException as err:
            permanent = err.smtp_code >= 500
            raise DeliveryError(f"next hop said {err.smtp_code}", permanent, err.smtp_code) from err
        except (TimeoutError, OSError, smtplib.SMTPException) as err:
            raise DeliveryError(f"next hop {self.host}:{self.port} unreachable: {err}") from err
        if said and len(self._said) < MAX_KEPT_REPLIES:
            self._said[entry_id] = said
        if refused:
            # Some recipients were refused: the rest have it and must not get it again.
            raise RecipientsRefused(refused)
        return None  # the next hop has it: nothing of ours to sync

    def _hand_on(self, envelope: Envelope, data: bytes) -> tuple[dict[str, tuple[int, str]], str]:
        """Send on a kept connection; once more on a fresh one when the kept one turns out
        closed before DATA began. After DATA began the next hop may have the message: a
        failure then is the usual failed delivery, never sent again here."""
        for fresh in (False, True):
            client = self.pool.take(fresh)
            try:
                refused = self._send(client, envelope, data)
            except (DeliveryError, RecipientsRefused):
                self.pool.give_back(client)  # raised on a reply: the connection is in step
                raise
            except OSError as err:  # smtplib's errors are OSErrors too
                self.pool.drop(client)
                if fresh or not client.reused or client.data_sent or not _connection_lost(err):
                    raise
                log.info("next hop %s:%d closed a kept connection: sending again", *self._at)
                continue
            self.pool.give_back(client)
            return refused, client.data_reply
        raise AssertionError("unreachable: the fresh attempt returns or raises")

    @property
    def _at(self) -> tuple[str, int]:
        return self.host, self.port

    @staticmethod
    def _send(client: smtplib.SMTP, envelope: Envelope, data: bytes) -> dict[str, tuple[int, str]]:
        """Send to every recipient the next hop can be told of; the refused ones and why."""
        client.ehlo_or_helo_if_needed()
        utf8 = client.has_extn("smtputf8")
        if not sendable(envelope.mail_from, utf8):
            raise DeliveryError("the sender's address cannot be sent to the next hop", True, 553)
        refused = {r: UNSENDABLE for r in envelope.rcpt_tos if not sendable(r, utf8)}
        rcpts = [r for r in envelope.rcpt_tos if r not in refused]
        if rcpts and not utf8 and _needs_smtputf8(envelope, data):
            # Header fields in UTF-8 that a next hop without SMTPUTF8 must not be sent
            # (RFC 6531 3.4): refused for every recipient, a final outcome with its reason.
            refused |= dict.fromkeys(rcpts, NEEDS_SMTPUTF8)
            rcpts = []
        if not rcpts:
            raise RecipientsRefused(refused)
        ascii_only = all(a.isascii() for a in (envelope.mail_from, *rcpts))
        # What the client declared is passed on to a next hop that takes it.
        options = ["SMTPUTF8"] if utf8 and (envelope.smtputf8 or not ascii_only) else []
        try:
            answered = client.sendmail(envelope.mail_from, rcpts, data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as err:
            raise RecipientsRefused({**refused, **_replies(err.recipients)}) from err
        return {**refused, **_replies(answered)}


def _connection_lost(err: OSError) -> bool:
    """The connection failed, or the next hop closed it (421), rather than refusing."""
    if isinstance(err, smtplib.SMTPResponseException):
        return err.smtp_code == 421
    return not isinstance(err, smtplib.SMTPRecipientsRefused)


def _needs_smtputf8(envelope: Envelope, data: bytes) -> bool:
    """The client sent the message under SMTPUTF8 and its header block is not ASCII. A
    message sent without SMTPUTF8 keeps going as before, 8-bit header bytes and all."""
    return envelope.smtputf8 and not head_of(data).isascii()


def sendable(address: str, smtputf8: bool) -> bool:
    """Whether ``address`` can go into an SMTP command to a next hop: no line break ever,
    and beyond ASCII only as UTF-8 to one that offers SMTPUTF8 (8-bit bytes that are no
    UTF-8 came to us as surrogates and fit no command)."""
    if "\r" in address or "\n" in address:
        return False
    if address.isascii():
        return True
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return smtputf8


def _replies(answers: dict[str, tuple[int, bytes]]) -> dict[str, tuple[int, str]]:
    return {rcpt: (code, text.decode("utf-8", "replace")) for rcpt, (code, text) in answers.items()}


def delivery_for(settings: Settings) -> Delivery:
    if settings.delivery == "relay":
        relay = settings.relay
        return RelayDelivery(relay.host, relay.port, keep=settings.relay_connections)
    return MaildirDelivery(settings.maildir)
