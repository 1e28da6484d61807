"""``mailscan reload``: check the policy file here first (every mistake named, nothing
signalled), then have the running front read it (SIGHUP) and wait until it says it has."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from mailserver.front.policies.holder import STATE_FILE, file_digest
from mailserver.front.policies.loading import load_policies
from tasks.errors import MailscanError
from tasks.settings import Settings

ANSWER_WITHIN_S = 10.0


def reload_front(settings: Settings) -> str:
    """What the front now runs with; MailscanError (PolicyError among them) otherwise."""
    sections = len(load_policies(settings).sections())
    state_path = settings.var_dir / STATE_FILE
    pid = _front_pid(state_path)
    sent_at = time.time()
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while time.monotonic() < deadline:
        state = _state(state_path)
        if state.get("at", 0) >= sent_at:
            if state.get("error"):
                raise MailscanError(f"the front (pid {pid}) kept its policy: {state['error']}")
            if state.get("digest") == file_digest(settings.policy_file):
                source = settings.policy_file or "the settings alone"
                return f"the front (pid {pid}) reloaded its policy: {source}, {sections} section(s)"
        time.sleep(0.1)
    raise MailscanError(f"the front (pid {pid}) did not confirm the reload within "
                        f"{ANSWER_WITHIN_S:.0f} s: see its log")  # fmt: skip


def _front_pid(state_path: Path) -> int:
    pid = _state(state_path).get("pid")
    if not isinstance(pid, int) or not _is_front(pid):
        raise MailscanError(
            f"no front is running with this MAILSCAN_VAR_DIR ({state_path} names none): "
            "start it with `mailscan up` or `mailscan serve`"
        )
    return pid


def _state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _is_front(pid: int) -> bool:
    """A live process that is a mailscan front (a pid is reused once its process ends)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"mailserver" in part or b"mailscan" in part for part in command)
