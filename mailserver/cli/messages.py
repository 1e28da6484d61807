"""``mailscan messages``: search the message log and show one message's whole record, as
lines for a person or JSON for scripts. The same store the console reads."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from mailserver.messagelog.crashlinks import with_crashdumps
from mailserver.messagelog.database import shown
from mailserver.messagelog.query import Criteria
from mailserver.messagelog.record import VERDICTS, MessageRecord
from mailserver.messagelog.store import MessageStore
from tasks.crashes.store import open_store
from tasks.errors import MessageLogUnavailable, NotLogged
from tasks.settings import Settings

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="mail_from", default="", metavar="A", help="sender")
    parser.add_argument("--to", dest="rcpt_to", default="", metavar="A", help="a recipient")
    parser.add_argument("--message-id", default="", metavar="ID", help="the Message-ID")
    parser.add_argument("--client", default="", metavar="IP", help="the client's address")
    parser.add_argument("--verdict", choices=VERDICTS, help="what the scans found")
    parser.add_argument("--subject", default="", metavar="WORDS", help="words of the subject")
    parser.add_argument("--since", type=span_s, metavar="SPAN", help="e.g. 30m, 2h, 7d")
    parser.add_argument("--page", type=int, default=1, help="page of results, from 1")
    parser.add_argument("--limit", type=int, default=50, help="results per page (at most 500)")


def span_s(text: str) -> float:
    """``2h``, ``30m``, ``7d``... as seconds."""
    found = _SPAN.fullmatch(text.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} is no time span (e.g. 90s, 30m, 2h, 7d)")
    return float(found.group(1)) * _UNITS_S[found.group(2)]


def criteria_of(args: argparse.Namespace) -> Criteria:
    since = time.time() - args.since if args.since is not None else None
    return Criteria(args.mail_from, args.rcpt_to, args.message_id, args.client,
                    args.verdict or "", args.subject, since)  # fmt: skip


def search(settings: Settings, args: argparse.Namespace) -> list[MessageRecord]:
    store = MessageStore.from_settings(settings)
    try:
        return store.search(criteria_of(args), args.page, args.limit)
    except SQLAlchemyError as err:
        raise _unavailable(settings, err) from err
    finally:
        store.close()


def get(settings: Settings, spool_id: str) -> MessageRecord:
    store = MessageStore.from_settings(settings)
    try:
        found = store.get(spool_id)
    except SQLAlchemyError as err:
        raise _unavailable(settings, err) from err
    finally:
        store.close()
    if found is None:
        raise NotLogged(f"the message log has no message {spool_id}")
    return with_crashdumps(found, open_store(settings))


def _unavailable(settings: Settings, err: SQLAlchemyError) -> MessageLogUnavailable:
    reason = str(err.orig if getattr(err, "orig", None) else err).splitlines()[0]
    return MessageLogUnavailable(f"message log {shown(settings)} unavailable: {reason}")


def list_lines(records: list[MessageRecord]) -> list[str]:
    if not records:
        return ["no messages found"]
    return [
        f"{_when(r.at)}  {r.spool_id}  {r.verdict:<7} {r.action:<11} "
        f"{r.mail_from or '<>'} -> {', '.join(x.address for x in r.recipients)}  {r.subject!r}"
        for r in records
    ]


def show_lines(record: MessageRecord) -> list[str]:
    return list(_show(record))


def _show(r: MessageRecord) -> Iterator[str]:
    yield f"message {r.spool_id}  {_when(r.at)}"
    yield f"  Message-ID: {r.message_id or '-'}   subject: {r.subject!r}   size: {r.size} bytes"
    yield f"  from {r.mail_from or '<>'}, client {r.client_ip or '-'} (HELO {r.helo or '-'})"
    for rcpt in r.recipients:
        yield f"  to {rcpt.address}: {rcpt.outcome}" + (f" ({rcpt.detail})" if rcpt.detail else "")
    yield f"  verdict {r.verdict}; {r.action}: {r.reason}" + (
        f"; policy {r.policy}" if r.policy else ""
    )
    if r.reply:
        yield f"  reply to the client: {r.reply}"
    yield from _engine_lines(r)
    if r.steps_ms:
        yield "  steps: " + ", ".join(f"{step} {ms:.0f} ms" for step, ms in r.steps_ms.items())
    if r.next_hop:
        yield f"  next hop: {r.next_hop}"
    if r.quarantine:
        yield f"  quarantine entry: {r.quarantine}"
    for dump in r.crashdumps:
        yield f"  crashdump: {dump} (mailscan crashdumps show {dump})"


def _engine_lines(r: MessageRecord) -> Iterator[str]:
    for pool, verdict in r.verdicts.items():
        if verdict is None:
            yield f"  {pool}: no verdict"
            continue
        for engine in verdict.get("verdicts") or ():
            found = engine.get("virus") or ""
            score = engine.get("score")
            said = f" score {score}" if score is not None else ""
            rules = ", ".join(engine.get("rules") or ())
            yield (f"  {pool}/{engine['engine']}: {engine['status']} {found}{said}"
                   + (f" rules {rules}" if rules else ""))  # fmt: skip


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
