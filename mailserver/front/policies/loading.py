"""Reading a policy file (TOML, ``MAILSCAN_POLICY_FILE``; docs/policy.md): a ``[default]``
section, ``[domain."example.org"]`` and ``[recipient."bob@example.org"]`` sections. A domain
section takes what it does not say from the default, a recipient section from its domain's
section (or the default). Every mistake is found in one reading and named on a line of its
own: file, line, section and key, so a broken file is fixed in one go."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mailserver.front.policies.rules import DEFAULT, ExtensionList, Policies, Rules
from tasks.attachments.names import EXTENSION
from tasks.errors import PolicyError
from tasks.setting_parsers import FAILURE_POLICIES
from tasks.settings import Settings

OFF = "off"
_PATTERN = re.compile(r"^@?[a-z0-9._+=-]*@?[a-z0-9-]+(\.[a-z0-9-]+)*$")
_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*["']?([A-Za-z0-9_-]+)["']?\s*=""")


def _score(value: Any) -> float | None:
    if value == OFF:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f'must be a number or "off", not {value!r}')
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def _banned(value: Any) -> bool:
    if value not in ("on", OFF):
        raise ValueError(f'must be "on" or "off", not {value!r}')
    return value == "on"


def _extension_list(value: Any) -> ExtensionList:
    shape = 'must be { add = ["iso", "img"] } or { only = ["exe", "js"] }'
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{shape}, not {value!r}")
    unknown = [key for key in value if key not in ("add", "only")]
    if unknown:
        raise ValueError(f"unknown sub-key {', '.join(map(repr, unknown))} (known: add, only)")
    if len(value) > 1:
        raise ValueError("add or only, not both: add extends the global list, only replaces it")
    ((how, items),) = value.items()
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(f'{how} must be a list of extensions, e.g. ["iso", "img"]')
    extensions = tuple(item.lower().lstrip(".") for item in items)
    bad = [item for item in extensions if not EXTENSION.fullmatch(item)]
    if bad:
        raise ValueError(f"{how}: not a file name extension: {', '.join(map(repr, bad))}")
    return ExtensionList(how, extensions)


def _one_line(value: Any) -> str:
    if not isinstance(value, str) or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must be one line of text")
    return value


def _failure_policy(value: Any) -> str:
    if value not in FAILURE_POLICIES:
        raise ValueError(f"must be one of {', '.join(FAILURE_POLICIES)}, not {value!r}")
    return value


def _senders(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('must be a list of addresses and domains, e.g. ["alice@example.org"]')
    bad = [v for v in value if not _PATTERN.match(v.lower()) or v.count("@") > 1]
    if bad:
        raise ValueError(f"not an address or a domain: {', '.join(map(repr, bad))}")
    return tuple(v.lower() for v in value)


KEYS: dict[str, Callable[[Any], Any]] = {
    "spam_tag_score": _score,
    "spam_quarantine_score": _score,
    "spam_reject_score": _score,
    "subject_tag": _one_line,
    "banned": _banned,
    "banned_extensions": _extension_list,
    "av_failure_policy": _failure_policy,
    "spam_failure_policy": _failure_policy,
    "allow_senders": _senders,
    "block_senders": _senders,
    "bypass": _flag,
}


def load_policies(settings: Settings) -> Policies:
    """The policy in force: the file's, or the settings' default for every recipient.
    PolicyError names every mistake."""
    base = Rules.from_settings(settings)
    if settings.policy_file is None:
        return Policies(base)
    return read_policy_file(settings.policy_file, base)


def read_policy_file(path: Path, base: Rules) -> Policies:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as err:
        raise PolicyError([f"policy file {path}: cannot be read: {err}"]) from err
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError([f"policy file {path}: not TOML: {err}"]) from err
    reader = _Reader(path, text)
    policies = reader.policies(document, base)
    if reader.problems:
        raise PolicyError([said for _, said in sorted(reader.problems)])  # in file order
    return policies


class _Reader:
    """Builds the sections and gathers every mistake with where it is."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.lines = path, _key_lines(text)
        self.problems: list[tuple[int, str]] = []

    def policies(self, document: dict[str, Any], base: Rules) -> Policies:
        for name in document:
            if name not in (DEFAULT, "domain", "recipient"):
                self._problem((name,), None, 'unknown section: use [default], [domain."NAME"] '
                              'or [recipient."ADDRESS"]')  # fmt: skip
        default = self._section((DEFAULT,), document.get(DEFAULT, {}), replace(base))
        domains = {
            name.lower(): self._section(("domain", name), table, default, f"domain {name.lower()}")
            for name, table in self._named(document, "domain").items()
        }
        policies = Policies(default, domains)
        recipients = {
            name.lower(): self._section(("recipient", name), table,
                                        policies.for_recipient(name), f"recipient {name.lower()}")
            for name, table in self._named(document, "recipient").items()
        }  # fmt: skip
        return Policies(default, domains, recipients)

    def _named(self, document: dict[str, Any], kind: str) -> dict[str, Any]:
        tables = document.get(kind, {})
        if not isinstance(tables, dict):
            self._problem((kind,), None, f'must be sections like [{kind}."NAME"]')
            return {}
        valid = {}
        for name, table in tables.items():
            shape = "an address" if kind == "recipient" else "a domain"
            if ("@" in name) != (kind == "recipient") or not _PATTERN.match(name.lower()):
                self._problem((kind, name), None, f"{name!r} is not {shape}")
            elif not isinstance(table, dict):
                self._problem((kind,), name, f'must be a section [{kind}."{name}"]')
            else:
                valid[name] = table
        return valid

    def _section(
        self, where: tuple[str, ...], table: Any, parent: Rules, name: str = DEFAULT
    ) -> Rules:
        if not isinstance(table, dict):
            self._problem(where, None, "must be a section")
            return parent
        values: dict[str, Any] = {}
        for key, raw in table.items():
            parse = KEYS.get(key)
            if parse is None:
                self._problem(where, key, f"unknown key (known: {', '.join(KEYS)})")
                continue
            try:
                values[key] = parse(raw)
            except ValueError as err:
                self._problem(where, key, str(err))
        return replace(parent, name=name, **values)

    def _problem(self, where: tuple[str, ...], key: str | None, what: str) -> None:
        # A key's line; for a key written as a table of its own ([default.banned_extensions])
        # that table's; else the section's.
        own_table = ((*where, key), None) if key else (where, None)
        line = self.lines.get((where, key)) or self.lines.get(own_table)
        line = line or self.lines.get((where, None))
        at = f", line {line}" if line else ""
        section = where[0] + "".join(f'."{part}"' for part in where[1:])
        named = f"[{section}]" + (f" {key}" if key else "")
        self.problems.append((line or 0, f"policy file {self.path}{at}: {named}: {what}"))


def _key_lines(text: str) -> dict[tuple[tuple[str, ...], str | None], int]:
    """Where each section starts and each of its keys is set: (section parts, key) -> line.
    Only for naming the place of a mistake; tomllib has read the file already."""
    found: dict[tuple[tuple[str, ...], str | None], int] = {}
    section: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        table = _TABLE.match(line)
        if table:
            section = _table_parts(table.group(1))
            found.setdefault((section, None), number)
            continue
        key = _KEY.match(line)
        if key:
            found.setdefault((section, key.group(1)), number)
    return found


def _table_parts(header: str) -> tuple[str, ...]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^."\'\s]+)', header)
    return tuple(quoted or single or bare for quoted, single, bare in parts)
