"""The quarantine: the message as it would have been delivered, beside a small JSON file
with its verdicts, time and reason."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mailserver.front.spool import SpoolEntry, fsync_dir
from tasks.wire.verdicts import ByPool, to_records


class Quarantine:
    """Keeps ``<id>.eml`` and ``<id>.json`` per message under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, entry: SpoolEntry, message: bytes, reason: str, verdicts: ByPool) -> None:
        meta = {
            "id": entry.id,
            "reason": reason,
            "quarantined_at": time.time(),
            "envelope": {**asdict(entry.envelope), "rcpt_tos": list(entry.envelope.rcpt_tos)},
            "verdicts": to_records(verdicts),
        }
        _write_atomically(self.root / f"{entry.id}.eml", message)
        _write_atomically(self.root / f"{entry.id}.json", json.dumps(meta, indent=2).encode())
        fsync_dir(self.root)  # both renames durable before the spool entry goes

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json"))

    def metadata(self, entry_id: str) -> dict[str, Any]:
        return json.loads((self.root / f"{entry_id}.json").read_text())


def _write_atomically(path: Path, data: bytes) -> None:
    staging = path.with_suffix(path.suffix + ".tmp")
    with open(staging, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(staging, path)
