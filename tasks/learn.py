"""Teaching spamd's Bayes, run by the spam pool: spamd lets only the pool's address learn
(``--allow-tell``, ``--allowed-ips``), so the console and the command line send the message
here rather than to spamd. Returns ``{"learnt": bool, "class": ..., "error": ...,
"learnt_bytes": int, "message_bytes": int}``; a failure is a result, not a raised
exception, so the sender can say what went wrong.

Bayes is taught the head of the message a scan gives spamd (``MAILSCAN_SPAM_MAX_BYTES``, cut
as ``tasks/plugins/truncation.py`` cuts): tokens past the cut are never seen by a scan, so
learning them would only teach Bayes what it can never use."""

from __future__ import annotations

import logging
from typing import Any

from aiospamc.responses import ResponseException

from tasks.celery import app
from tasks.errors import BackendProtocol, ScanError
from tasks.plugins.spamassassin import SpamassassinPlugin
from tasks.plugins.truncation import truncate
from tasks.settings import current_settings
from tasks.wire.keys import LEARN_TASK, SPAM_POOL

log = logging.getLogger(__name__)
CLASSES = ("spam", "ham")


@app.task(name=LEARN_TASK)
def learn_spamd(message_class: str, message: bytes) -> dict[str, Any]:
    if message_class not in CLASSES:
        return {"learnt": False, "class": message_class, "error": "class must be spam or ham"}
    settings = current_settings()
    plugin = SpamassassinPlugin(settings=settings, pool=SPAM_POOL)
    given = truncate(message, settings.spam_max_bytes)
    try:
        learnt = plugin.learn(given, message_class)
    except BackendProtocol as err:
        cause = err.__cause__
        if isinstance(cause, ResponseException):  # an error status: spamd would not learn
            error = f"spamd refused to learn ({cause.__class__.__name__}): is it started with "
            error += "--allow-tell, and is the spam pool's address in its --allowed-ips?"
        else:
            error = str(err)
        return _failed(message_class, error)
    except ScanError as err:
        return _failed(message_class, str(err))
    log.info("spamd learnt %d of a message's %d bytes as %s%s", len(given), len(message),
             message_class, "" if learnt else " (it knew them already)")  # fmt: skip
    return {"learnt": learnt, "class": message_class, "error": "",
            "learnt_bytes": len(given), "message_bytes": len(message)}  # fmt: skip


def _failed(message_class: str, error: str) -> dict[str, Any]:
    log.warning("spamd did not learn a message as %s: %s", message_class, error)
    return {"learnt": False, "class": message_class, "error": error}
