"""The error tree of mailscan, drawn once.

    MailscanError
    ├── ConfigError            bad or missing configuration; raised at start, never mid-scan
    ├── BlobMissing            the message bytes are gone from Redis (expired or never stored)
    │   └── SpoolUnreadable    a big message is not in the spool this pool process reads
    ├── UploadFailed           a crash report did not reach the vendor's endpoint
    └── ScanError              a plugin could not produce a verdict
        ├── BackendUnavailable the daemon behind a plugin refused, dropped or timed out
        └── BackendProtocol    the daemon answered something we cannot read

Celery's ``SoftTimeLimitExceeded`` is not part of this tree and is always re-raised.
"""


class MailscanError(Exception):
    """Base of every error mailscan raises on purpose."""


class ConfigError(MailscanError):
    """Configuration is invalid; the message names the variable and what is wrong."""


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


class UploadFailed(MailscanError):
    """The crash report endpoint refused the report or could not be reached. ``retryable``
    is false when trying again cannot help (a 4xx answer other than 408 or 429)."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
