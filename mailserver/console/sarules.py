"""What SpamAssassin says of its own rules: each rule's description (``describe`` lines) and
score (``score`` lines), read once from the installed rules, so the message page can say why
a message scored what it did. Nothing is asked of anyone else: the rules are local files."""

from __future__ import annotations

import functools
import glob
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Debian's rules, the rules sa-update fetched (one folder per SpamAssassin version), and
# the site's own settings; later files override earlier ones, as SpamAssassin reads them.
RULE_FILES = (
    "/usr/share/spamassassin/*.cf",
    "/var/lib/spamassassin/*/*.cf",
    "/var/lib/spamassassin/*/*/*.cf",
    "/etc/spamassassin/*.cf",
)
_LINE = re.compile(r"^(describe|score)\s+([A-Za-z0-9_]+)\s+(.*?)\s*$")
# SpamAssassin's score sets: 0 without Bayes and network tests, 2 with Bayes alone. spamd
# runs with --local (no network tests); Bayes took part when one of its rules hit.
SET_LOCAL, SET_LOCAL_BAYES = 0, 2
DEFAULT_SCORE = 1.0  # what SpamAssassin gives a rule that has no score line


@dataclass(frozen=True)
class RuleHit:
    name: str
    score: float | None
    description: str


@dataclass
class RuleBook:
    descriptions: dict[str, str] = field(default_factory=dict)
    scores: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def read(self, lines: Iterable[str]) -> None:
        for line in lines:
            found = _LINE.match(line)
            if not found:
                continue  # comments, other settings, and "lang xx describe" translations
            kind, rule, value = found.groups()
            if kind == "describe":
                self.descriptions[rule] = value
            elif numbers := _numbers(value):
                self.scores[rule] = numbers

    def hits(self, rules: Iterable[str]) -> list[RuleHit]:
        """The rules that hit a message, with their score and description, highest first."""
        names = list(dict.fromkeys(rules))
        score_set = SET_LOCAL_BAYES if any(n.startswith("BAYES_") for n in names) else SET_LOCAL
        found = [
            RuleHit(name, self._score(name, score_set), self.descriptions.get(name, ""))
            for name in names
        ]
        return sorted(found, key=lambda hit: -(hit.score or 0.0))

    def _score(self, rule: str, score_set: int) -> float | None:
        numbers = self.scores.get(rule)
        if not numbers:
            return DEFAULT_SCORE if rule in self.descriptions else None
        return numbers[score_set] if len(numbers) == 4 else numbers[0]


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(word) for word in text.split("#")[0].split())
    except ValueError:
        return ()


def rule_book(extra_lines: Iterable[str] = (), patterns: Iterable[str] = RULE_FILES) -> RuleBook:
    book = RuleBook()
    for pattern in patterns:
        for name in sorted(glob.glob(pattern)):
            book.read(_lines(Path(name)))
    book.read(extra_lines)
    return book


@functools.cache
def installed(extra_lines: tuple[str, ...] = ()) -> RuleBook:
    """The installed rules, read on first use (blocking: call it off the event loop)."""
    return rule_book(extra_lines)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:  # a file that went away or that we may not read: its rules stay unnamed
        return []
