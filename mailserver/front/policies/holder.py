"""The policy in force in a running front, and its reload (``mailscan reload``, SIGHUP): the
file is read and checked whole before anything switches, so a message is always judged by
one complete policy, the old or the new; a broken file leaves the old one in force. What
the reload changed is logged, and a small state file says which file content is in force
(``mailscan reload`` waits for it)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import fields
from pathlib import Path

from mailserver.front.policies.loading import load_policies
from mailserver.front.policies.rules import Policies, Rules
from tasks.errors import PolicyError
from tasks.settings import Settings

log = logging.getLogger(__name__)
STATE_FILE = "policy-state.json"


class PolicyHolder:
    """``current`` is read by every decision; ``reload`` replaces it whole."""

    def __init__(self, settings: Settings, current: Policies | None = None) -> None:
        self.settings = settings
        self.current = current if current is not None else load_policies(settings)

    def reload(self) -> bool:
        """Read the file again; True when the new policy is in force."""
        try:
            fresh = load_policies(self.settings)
        except PolicyError as err:
            for line in err.lines:
                log.error("%s", line)
            log.error("policy not reloaded: the policy in force stays")
            self.write_state(error="; ".join(err.lines))
            return False
        changes = describe_changes(self.current, fresh)
        self.current = fresh
        self.write_state(error="")
        log.warning("policy reloaded from %s: %s", self.settings.policy_file or "the settings",
                    "; ".join(changes) or "nothing changed")  # fmt: skip
        return True

    def write_state(self, error: str) -> None:
        """For ``mailscan reload``: the digest of the file in force and the last error."""
        path = self.settings.var_dir / STATE_FILE
        state = {"digest": file_digest(self.settings.policy_file), "error": error,
                 "at": time.time(), "pid": os.getpid()}  # fmt: skip
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.with_suffix(".tmp")
            staging.write_text(json.dumps(state))
            staging.replace(path)
        except OSError as err:
            log.warning("policy state not written to %s: %s", path, err)

    def forget_state(self) -> None:
        """At a stop: no front here to signal any more."""
        path = self.settings.var_dir / STATE_FILE
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


def file_digest(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def describe_changes(old: Policies, new: Policies) -> list[str]:
    """One phrase per section added, removed or changed, naming the changed keys."""
    before, after = old.sections(), new.sections()
    said = [f"{name} added" for name in after if name not in before]
    said += [f"{name} removed" for name in before if name not in after]
    for name in after:
        if name in before:
            changed = _changed_keys(before[name], after[name])
            if changed:
                said.append(f"{name}: " + ", ".join(changed))
    return said


def _changed_keys(old: Rules, new: Rules) -> list[str]:
    return [
        f"{f.name} {getattr(old, f.name)!r} -> {getattr(new, f.name)!r}"
        for f in fields(Rules)
        if f.name != "name" and getattr(old, f.name) != getattr(new, f.name)
    ]
