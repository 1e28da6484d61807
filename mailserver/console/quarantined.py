"""The quarantine as the console shows it: list, headers, release and delete. An id is a spool
id (24 hex digits) or nothing: a name that tries to leave the folder is refused before any
file is touched."""

from __future__ import annotations

import re
from email.parser import BytesHeaderParser
from typing import Any

from mailserver.front.delivery import Delivery
from mailserver.front.quarantine import Quarantine
from mailserver.front.spool import Envelope
from tasks.errors import NotQuarantined

QUARANTINE_ID = re.compile(r"^[0-9a-f]{24}$")
HEADER_BYTES_MAX = 256 * 1024


def listing(quarantine: Quarantine) -> list[dict[str, Any]]:
    found = []
    for entry_id in quarantine.ids():
        if not QUARANTINE_ID.match(entry_id):
            continue
        try:
            found.append(quarantine.metadata(entry_id))
        except (OSError, ValueError):
            continue  # released or deleted meanwhile, or half written
    return sorted(found, key=lambda m: m.get("quarantined_at", 0), reverse=True)


def metadata(quarantine: Quarantine, entry_id: str) -> dict[str, Any]:
    _check(quarantine, entry_id)
    return quarantine.metadata(entry_id)


def headers(quarantine: Quarantine, entry_id: str) -> list[tuple[str, str]]:
    """The header lines of the quarantined message, unfolded; never its body."""
    _check(quarantine, entry_id)
    with open(quarantine.root / f"{entry_id}.eml", "rb") as handle:
        head = handle.read(HEADER_BYTES_MAX)
    head = head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    parsed = BytesHeaderParser().parsebytes(head)
    return [(name, " ".join(str(value).split())) for name, value in parsed.items()]


def release(quarantine: Quarantine, delivery: Delivery, entry_id: str) -> dict[str, Any]:
    """Deliver the message as it would have been delivered, then forget it."""
    meta = metadata(quarantine, entry_id)
    envelope = meta["envelope"]
    envelope = Envelope(**{**envelope, "rcpt_tos": tuple(envelope["rcpt_tos"])})
    message = (quarantine.root / f"{entry_id}.eml").read_bytes()
    delivery.deliver(entry_id, envelope, message)
    remove(quarantine, entry_id)
    return meta


def remove(quarantine: Quarantine, entry_id: str) -> None:
    _check(quarantine, entry_id)
    # The metadata first: the listing reads it, so a half-removed entry is already gone.
    (quarantine.root / f"{entry_id}.json").unlink(missing_ok=True)
    (quarantine.root / f"{entry_id}.eml").unlink(missing_ok=True)


def _check(quarantine: Quarantine, entry_id: str) -> None:
    if not QUARANTINE_ID.match(entry_id) or not (quarantine.root / f"{entry_id}.json").is_file():
        raise NotQuarantined(entry_id)
