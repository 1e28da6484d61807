"""The error tree of mailscan, drawn once: every error class of tasks/ and mailserver/.

    MailscanError
    ├── ConfigError            bad or missing configuration; raised at start, never mid-scan
    │   └── PolicyError        a policy file with mistakes, one line each (at start, reload)
    ├── BlobMissing            the message bytes are gone from Redis (expired or never stored)
    │   └── SpoolUnreadable    a big message is not in the spool this pool process reads
    ├── ScanError              a plugin could not produce a verdict
    │   ├── BackendUnavailable the daemon behind a plugin refused, dropped or timed out
    │   └── BackendProtocol    the daemon answered something we cannot read
    ├── BannedPart             a part of a message matches a banned-attachment rule (a verdict)
    ├── SpoolWriteFailed       a staged spool entry could not be made durable (no 250 for it)
    ├── SpoolEntryCorrupt      a spool entry's envelope cannot be read
    ├── DeliveryError          the message could not be handed on (4xx or 5xx)
    │   └── RecipientsRefused  the next hop refused some recipients; the others have it
    ├── NotQuarantined         no quarantined message has this id (also a LookupError)
    ├── MessageLogUnavailable  the message log's database cannot be read (a search, a show)
    ├── NotLogged              the message log has no outcome for this id (also a LookupError)
    ├── MilterProtocolError    an MTA sent the milter front a packet it cannot read
    ├── LearnFailed            spamd's Bayes could not be taught a message
    ├── StackError             a service of the local system could not start
    ├── UploadFailed           a crash report did not reach the vendor's endpoint
    └── AlertNotSent           an alert did not reach the webhook or the administrator's mailbox

Celery's ``SoftTimeLimitExceeded`` is not part of this tree and is always re-raised.
"""


class MailscanError(Exception):
    """Base of every error mailscan raises on purpose."""


class ConfigError(MailscanError):
    """Configuration is invalid; the message names the variable and what is wrong."""


class PolicyError(ConfigError):
    """A policy file that cannot be used; ``lines`` has one line per mistake."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class BlobMissing(MailscanError):
    """The stored copy of a message could not be found or failed its digest check."""


class SpoolUnreadable(BlobMissing):
    """A big message's spool entry is not in the spool folder this pool process reads: the
    folder is not shared with the SMTP front, or is another one. The front then sends the
    message through Redis (mailserver/front/pipeline.py)."""


class ScanError(MailscanError):
    """A plugin could not produce a verdict for a message."""


class BackendUnavailable(ScanError):
    """The scanner daemon refused the connection, dropped it, or did not answer in time.
    ``timed_out`` tells the last apart: waiting again would only double the delay."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class BackendProtocol(ScanError):
    """The scanner daemon answered, but not in a form we understand."""


class BannedPart(MailscanError):
    """A part of a message, at ``path`` (archive members after a slash), matches the
    banned-attachment ``rule``. Not a failure: the ``banned`` engine turns it into its
    verdict, and it ends the look at the first match."""

    def __init__(self, path: str, rule: str) -> None:
        super().__init__(f"{path}: {rule}")
        self.path = path
        self.rule = rule


class SpoolWriteFailed(MailscanError):
    """A staged entry could not be made durable: nobody may be told 250 for it."""


class SpoolEntryCorrupt(MailscanError):
    """A spool entry's envelope line cannot be read: it can never be delivered as it is."""


class DeliveryError(MailscanError):
    """The message could not be handed on. ``permanent`` tells a 5xx from a 4xx; ``code``
    is the next hop's reply code, when it gave one."""

    def __init__(self, message: str, permanent: bool = False, code: int = 0) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code or (554 if permanent else 451)


class RecipientsRefused(DeliveryError):
    """The next hop refused ``refused`` (recipient -> (code, text)); the other recipients
    have the message and must not get it again."""

    def __init__(self, refused: dict[str, tuple[int, str]]) -> None:
        codes = [code for code, _ in refused.values()]
        super().__init__(f"next hop refused {len(refused)} recipient(s)", min(codes) >= 500)
        self.refused = refused


class NotQuarantined(MailscanError, LookupError):
    """No quarantined message has this id (or the id is not an id at all)."""


class MessageLogUnavailable(MailscanError):
    """The message log's database did not answer a search; the front's writes wait for it
    in their journal instead (mailserver/messagelog/writer.py)."""


class NotLogged(MailscanError, LookupError):
    """The message log has no outcome for this spool id."""


class MilterProtocolError(MailscanError):
    """A milter packet that is malformed, too large, or out of place: the milter front
    closes that connection, and the MTA applies its ``milter_default_action``."""


class LearnFailed(MailscanError):
    """spamd could not be taught a message: no spam worker answered in time, spamd refused
    (it must run with ``--allow-tell`` and let the spam pool's address in), or the message
    is larger than the mail mailscan accepts (``MAILSCAN_MAX_MESSAGE_BYTES``)."""


class StackError(MailscanError):
    """A service could not start: the message says which and why (with its log's tail)."""


class UploadFailed(MailscanError):
    """The crash report endpoint refused the report or could not be reached. ``retryable``
    is false when trying again cannot help (a 4xx answer other than 408 or 429)."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class AlertNotSent(MailscanError):
    """An alert did not reach the webhook or the administrator's mailbox; the dispatcher
    tries it again later (tasks/alerts/dispatch.py)."""
