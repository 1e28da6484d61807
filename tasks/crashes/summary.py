"""The crash summary: what a crash report carries by default, built by allow-list.

Only facts that come from our code and the platform go in: the kind, pool and plugin name,
the exception's type, where it failed (``file:function:line``, the file relative to its
package), the signal and exit status, versions, the signature, and a keyed hash of the
exception's message so that the vendor can tell identical messages apart from different
ones without reading either. Every value is checked against the shape it must have; one that
does not fit becomes ``"?"``. Nothing of a message (no address, subject, host name, body,
attachment name) can pass, whatever the crashdump holds: free text never goes in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sysconfig
from pathlib import Path
from typing import Any

UNFIT = "?"
MAX_FRAMES = 40
_ID = re.compile(r"[0-9a-f]{32}")
_SIGNATURE = re.compile(r"[0-9a-f]{16}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_NAME = re.compile(r"[A-Za-z_][\w.-]{0,63}")
_SIGNAL = re.compile(r"SIG[A-Z0-9]{1,12}")
_FUNCTION = re.compile(r"<?[A-Za-z_][\w.]{0,99}>?")
_FILE = re.compile(r"[\w.-]{1,100}(?:/[\w.-]{1,100}){0,15}")
_VERSION = re.compile(r"[\w.+:/() -]{0,120}")
KINDS = ("freeze", "crash", "exception", "connection", "poison")
VERSION_FIELDS = ("python", "celery", "mailscan", "backend", "platform")
# faulthandler's own line for a frame: File "path", line N in function
_FAULT_FRAME = re.compile(r'^\s*File "(.*)", line (\d+) in (.*)$', re.MULTILINE)
_FAULT_THREAD = re.compile(r"^(?:Current thread|Thread) 0x[0-9a-f]+", re.MULTILINE)
# Where a file's path starts to say something about the code rather than this machine.
_PACKAGE_ROOTS = (
    str(Path(__file__).resolve().parents[2]),
    sysconfig.get_paths()["purelib"],
    sysconfig.get_paths()["platlib"],
    sysconfig.get_paths()["stdlib"],
)
_INSTALL_MARKERS = ("/site-packages/", "/dist-packages/")


def summarize(dump: dict[str, Any], message_key: bytes) -> dict[str, Any]:
    """The default report entry of one crashdump."""
    exception = dump.get("exception") or {}
    return {
        "id": _fit(_ID, dump.get("id")),
        "time": _fit(_TIME, dump.get("time")),
        "kind": dump.get("kind") if dump.get("kind") in KINDS else UNFIT,
        "pool": _fit(_NAME, dump.get("pool")),
        "plugin": _fit(_NAME, (dump.get("plugin") or {}).get("name")),
        "exception": {
            "type": _fit(_NAME, exception.get("type")) if exception.get("type") else "",
            "message_hash": message_hash(message_key, exception.get("message") or ""),
        },
        "frames": [frame_text(*frame) for frame in (dump.get("frames") or [])[-MAX_FRAMES:]],
        "faulthandler_frames": faulthandler_frames(dump.get("faulthandler") or ""),
        "signal": _fit(_SIGNAL, dump["signal"]) if dump.get("signal") else None,
        "exit_status": dump.get("exit_status") if _is_int(dump.get("exit_status")) else None,
        "versions": _versions(dump.get("versions") or {}),
        "signature": _fit(_SIGNATURE, dump.get("signature")),
    }


def message_hash(key: bytes, message: str) -> str:
    """Keyed, so that nobody without this server's secret can test a guess of what the
    message said (an address, say); equal messages of this server hash alike."""
    if not message:
        return ""
    return hmac.new(key, message.encode(errors="replace"), hashlib.sha256).hexdigest()[:16]


def frame_text(path: Any, function: Any, line: Any) -> str:
    """``file:function:line``, the file relative to its package."""
    number = line if _is_int(line) else 0
    return f"{_fit(_FILE, relative_file(str(path)))}:{_fit(_FUNCTION, function)}:{number}"


def relative_file(path: str) -> str:
    """The path from the package's folder on: ``tasks/plugins/clamav.py``,
    ``celery/app/trace.py``, ``threading.py``; a file elsewhere by its name alone (its
    folders say something about this machine, not about the code)."""
    for marker in _INSTALL_MARKERS:
        if marker in path:
            return path.rsplit(marker, 1)[1]
    for root in sorted(_PACKAGE_ROOTS, key=len, reverse=True):
        if path.startswith(root.rstrip("/") + "/"):
            return path[len(root.rstrip("/")) + 1 :]
    return path.rsplit("/", 1)[-1]


def faulthandler_frames(text: str) -> list[list[str]]:
    """The frames of each thread in a faulthandler dump, innermost first as it lists them."""
    blocks = _FAULT_THREAD.split(text)
    threads = []
    for block in blocks:
        frames = [frame_text(m[1], m[3], int(m[2])) for m in _FAULT_FRAME.finditer(block)]
        if frames:
            threads.append(frames[:MAX_FRAMES])
    return threads


def _versions(versions: dict[str, Any]) -> dict[str, str]:
    return {name: _fit(_VERSION, versions.get(name, "")) for name in VERSION_FIELDS}


def _fit(shape: re.Pattern[str], value: Any) -> str:
    if isinstance(value, str) and shape.fullmatch(value):
        return value
    return UNFIT


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
