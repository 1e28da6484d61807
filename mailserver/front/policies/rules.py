"""The rules one recipient's mail is held to, and which rules each recipient gets: a section
for the address, else for its domain or the nearest parent domain, else the default. Without
a policy file every recipient gets the default, which the settings make."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from tasks.settings import Settings

DEFAULT = "default"


@dataclass(frozen=True, repr=False)
class ExtensionList:
    """A section's own banned file name extensions: ``add`` extends the global list
    (``MAILSCAN_BANNED_EXTENSIONS``), ``only`` replaces it."""

    how: Literal["add", "only"]
    extensions: tuple[str, ...]

    def applied_to(self, global_list: Iterable[str]) -> frozenset[str]:
        if self.how == "only":
            return frozenset(self.extensions)
        return frozenset(global_list) | frozenset(self.extensions)

    def __repr__(self) -> str:
        # How a reload's log shows it: "add .iso .img".
        return " ".join([self.how, *(f".{ext}" for ext in self.extensions)])


@dataclass(frozen=True)
class Rules:
    """``name`` says which section these are (``default``, ``domain example.org``,
    ``recipient bob@example.org``): the message log and the reply's reason name it."""

    name: str
    # Spam from this score on (None: spamd's own verdict), quarantined from, refused from.
    spam_tag_score: float | None
    spam_quarantine_score: float | None
    spam_reject_score: float | None
    subject_tag: str
    banned: bool  # a banned attachment refuses the message
    av_failure_policy: str
    spam_failure_policy: str
    allow_senders: tuple[str, ...] = ()  # never spam (viruses are refused all the same)
    block_senders: tuple[str, ...] = ()  # refused as from a blocked sender
    bypass: bool = False  # no spam and no banned-attachment check; viruses still count
    banned_extensions: ExtensionList | None = None  # None: the global list

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        return cls(
            name=DEFAULT,
            spam_tag_score=None,
            spam_quarantine_score=settings.spam_quarantine_score,
            spam_reject_score=None,
            subject_tag=settings.spam_subject_tag,
            banned=True,
            av_failure_policy=settings.pools["av"].failure_policy,
            spam_failure_policy=settings.pools["spam"].failure_policy,
        )

    def allows(self, sender: str) -> bool:
        return sender_matches(sender, self.allow_senders)

    def blocks(self, sender: str) -> bool:
        return sender_matches(sender, self.block_senders)


@dataclass(frozen=True)
class Policies:
    """Every section of a policy file, or the default alone. Keys are lower case."""

    default: Rules
    domains: dict[str, Rules] = field(default_factory=dict)
    recipients: dict[str, Rules] = field(default_factory=dict)

    def for_recipient(self, rcpt: str) -> Rules:
        address = rcpt.lower()
        if address in self.recipients:
            return self.recipients[address]
        return self.for_domain(address.rpartition("@")[2])

    def for_domain(self, domain: str) -> Rules:
        labels = domain.lower().split(".")
        for start in range(len(labels)):
            found = self.domains.get(".".join(labels[start:]))
            if found is not None:
                return found
        return self.default

    def groups(self, rcpts: Iterable[str]) -> list[tuple[Rules, tuple[str, ...]]]:
        """Recipients grouped by the rules they get, in the envelope's order."""
        grouped: dict[str, tuple[Rules, list[str]]] = {}
        for rcpt in rcpts:
            rules = self.for_recipient(rcpt)
            grouped.setdefault(rules.name, (rules, []))[1].append(rcpt)
        return [(rules, tuple(members)) for rules, members in grouped.values()]

    def sections(self) -> dict[str, Rules]:
        return {DEFAULT: self.default, **{r.name: r for r in self.domains.values()},
                **{r.name: r for r in self.recipients.values()}}  # fmt: skip


def sender_matches(sender: str, patterns: Iterable[str]) -> bool:
    """``patterns``: addresses (``alice@example.org``) and domains (``example.org`` or
    ``@example.org``, its subdomains too). The null sender matches none."""
    address = sender.lower().strip("<>")
    if "@" not in address:
        return False
    domain = address.rpartition("@")[2]
    for pattern in patterns:
        if "@" in pattern.lstrip("@"):
            if address == pattern:
                return True
            continue
        wanted = pattern.lstrip("@")
        if domain == wanted or domain.endswith("." + wanted):
            return True
    return False
