"""What a search asks for (``Criteria``), and the one query that answers it, newest first.

Every field is optional and they combine (AND). The query is built so that each field
alone walks an index in time order: a page of the newest matches costs a page of index
entries, however many rows match."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, select

from mailserver.messagelog.schema import messages, recipients

PER_PAGE = 50
MAX_PER_PAGE = 500


@dataclass(frozen=True)
class Criteria:
    """``since`` and ``until``: Unix times; addresses match whole and ignore case;
    ``subject``: words the subject contains, in that order."""

    mail_from: str = ""
    rcpt_to: str = ""
    message_id: str = ""
    client_ip: str = ""
    verdict: str = ""
    subject: str = ""
    since: float | None = None
    until: float | None = None


def normal_address(address: str) -> str:
    return address.strip().strip("<>").lower()


def normal_message_id(message_id: str) -> str:
    return message_id.strip().strip("<>").strip()


def search_query(criteria: Criteria, page: int = 1, per_page: int = PER_PAGE) -> Select:
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    if criteria.rcpt_to:
        # Ordered by the recipient row's own time: the (address, at) index gives the page.
        order = recipients.c.at
        query = select(messages.c.body).join(
            recipients, recipients.c.record_id == messages.c.record_id
        )
        query = query.where(recipients.c.address == normal_address(criteria.rcpt_to))
        query = _in_time(query, order, criteria)
    else:
        order = messages.c.at
        query = _in_time(select(messages.c.body), order, criteria)
    query = _fields(query, criteria)
    return query.order_by(order.desc()).limit(per_page).offset((max(page, 1) - 1) * per_page)


def _in_time(query: Select, at: ColumnElement[float], criteria: Criteria) -> Select:
    if criteria.since is not None:
        query = query.where(at >= criteria.since)
    if criteria.until is not None:
        query = query.where(at < criteria.until)
    return query


def _fields(query: Select, criteria: Criteria) -> Select:
    wanted = {
        messages.c.mail_from: normal_address(criteria.mail_from),
        messages.c.message_id: normal_message_id(criteria.message_id),
        messages.c.client_ip: criteria.client_ip.strip(),
        messages.c.verdict: criteria.verdict,
    }
    for column, value in wanted.items():
        if value:
            query = query.where(column == value)
    if criteria.subject.strip():
        words = "%".join(_escaped(word) for word in criteria.subject.split())
        query = query.where(messages.c.subject.ilike(f"%{words}%", escape="\\"))
    return query


def _escaped(text: str) -> str:
    """LIKE's own characters, taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
