"""Teaching spamd's Bayes, run by the spam pool: spamd lets only the pool's address learn
(``--allow-tell``, ``--allowed-ips``), so the console and the command line send the message
here rather than to spamd. Returns ``{"learnt": bool, "class": ..., "error": ...}``; a
failure is a result, not a raised exception, so the sender can say what went wrong."""

from __future__ import annotations

import logging
from typing import Any

from aiospamc.responses import ResponseException

from tasks.celery import app
from tasks.errors import BackendProtocol, ScanError
from tasks.plugins.spamassassin import SpamassassinPlugin
from tasks.settings import current_settings
from tasks.wire.keys import LEARN_TASK, SPAM_POOL

log = logging.getLogger(__name__)
CLASSES = ("spam", "ham")


@app.task(name=LEARN_TASK)
def learn_spamd(message_class: str, message: bytes) -> dict[str, Any]:
    if message_class not in CLASSES:
        return {"learnt": False, "class": message_class, "error": "class must be spam or ham"}
    plugin = SpamassassinPlugin(settings=current_settings(), pool=SPAM_POOL)
    try:
        learnt = plugin.learn(message, message_class)
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
    log.info("spamd learnt a message of %d bytes as %s%s", len(message), message_class,
             "" if learnt else " (it knew it already)")  # fmt: skip
    return {"learnt": learnt, "class": message_class, "error": ""}


def _failed(message_class: str, error: str) -> dict[str, Any]:
    log.warning("spamd did not learn a message as %s: %s", message_class, error)
    return {"learnt": False, "class": message_class, "error": error}
