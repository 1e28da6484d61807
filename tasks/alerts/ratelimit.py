"""At most one notice per kind of alert in each window of ``every_s`` seconds: the first
alert of a quiet kind goes out at once and opens a window; what follows in the window is
held and counted, and sent as one digest when the window ends ("12 more virus alerts: ...").
A digest opens the next window, so a flood gives one digest per window, never more. Pure:
the dispatcher (dispatch.py) keeps the windows in Redis between its runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.alerts.events import Alert

# The summaries a digest quotes; the rest are only counted.
SAMPLES = 5


@dataclass
class Window:
    """A kind's window: when it ends, how many alerts it held back, and the first few."""

    until: float
    held: int = 0
    samples: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        return cls(float(data["until"]), int(data["held"]), list(data["samples"]))


@dataclass(frozen=True)
class Notice:
    """What is sent: a subject line, a plain text, and the JSON the webhook gets."""

    kind: str
    subject: str
    text: str
    payload: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        return cls(data["kind"], data["subject"], data["text"], data["payload"])


class RateLimiter:
    """``close_windows`` then ``admit`` the new alerts, at each run; ``windows`` by kind."""

    def __init__(self, every_s: float, windows: dict[str, Window] | None = None) -> None:
        self.every_s = every_s
        self.windows = windows if windows is not None else {}

    def admit(self, alert: Alert, now: float) -> Notice | None:
        """The notice to send now, or None when the alert is held for the digest."""
        window = self.windows.get(alert.kind)
        if window is None or now >= window.until:
            self.windows[alert.kind] = Window(now + self.every_s)
            return single(alert)
        window.held += 1
        if len(window.samples) < SAMPLES:
            window.samples.append(alert.summary)
        return None

    def close_windows(self, now: float) -> list[Notice]:
        """The digests of the windows that ended; a quiet window simply ends."""
        notices = []
        for kind, window in sorted(self.windows.items()):
            if now < window.until:
                continue
            if window.held:
                notices.append(digest(kind, window))
                self.windows[kind] = Window(now + self.every_s)
            else:
                del self.windows[kind]
        return notices


def single(alert: Alert) -> Notice:
    text = f"{alert.summary}\n\n" + "".join(f"{k}: {_shown(v)}\n" for k, v in alert.facts.items())
    payload = {"digest": False, "id": alert.id, **alert.as_json()}
    return Notice(alert.kind, f"mailscan alert: {alert.summary}", text, payload)


def digest(kind: str, window: Window) -> Notice:
    noun = "alert" if window.held == 1 else "alerts"
    quoted = "; ".join(window.samples) + ("; ..." if window.held > len(window.samples) else "")
    summary = f"{window.held} more {kind} {noun}: {quoted}"
    text = f"{summary}\n\n" + "".join(f"- {s}\n" for s in window.samples)
    payload = {"digest": True, "kind": kind, "count": window.held, "summary": summary,
               "samples": window.samples}  # fmt: skip
    return Notice(kind, f"mailscan alert: {window.held} more {kind} {noun}", text, payload)


def _shown(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
