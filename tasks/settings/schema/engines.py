"""The pools and their engines, and the banned-attachment rules."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tasks import setting_parsers as parse
from tasks.setting_parsers import CHAOS_ACTIONS, Endpoint
from tasks.settings.declare import computed, setting
from tasks.settings.pools import Pools

# Executables and scripts that Windows runs on a double click: nobody mails them in earnest.
BANNED_EXTENSIONS = (
    "exe", "scr", "pif", "com", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta",
    "cpl", "msi", "msp", "lnk", "reg", "ps1", "jar",
)  # fmt: skip
# What libmagic calls Windows executables, installers and shortcuts.
BANNED_TYPES = (
    "application/x-dosexec",
    "application/vnd.microsoft.portable-executable",
    "application/x-msdownload",
    "application/x-msi",
    "application/x-ms-shortcut",
)


@dataclass(frozen=True)
class EngineSettings:
    """The pools' own settings, and the ``Engines`` and ``Banned attachments`` sections."""

    # Each pool's own settings, MAILSCAN_AV_* and MAILSCAN_SPAM_* (tasks/settings/pools.py).
    pools: Pools = dataclasses.field(default_factory=Pools)
    clamd: Endpoint = setting(
        Endpoint(port=3320), parse.endpoint, "clamd as `HOST:PORT` or `unix:/path`",
        section="Engines",
    )  # fmt: skip
    clamd_timeout_s: float = setting(30.0, parse.seconds, "socket timeout for clamd")
    spamd: Endpoint = setting(
        Endpoint(port=7830), parse.endpoint, "spamd as `HOST:PORT` or `unix:/path`"
    )
    spamd_timeout_s: float = setting(30.0, parse.seconds, "timeout for spamd")
    spamd_config: tuple[str, ...] = setting(
        (), parse.sa_config_lines,
        "SpamAssassin settings for the spamd `mailscan up` starts, `;`-separated, e.g. "
        "`bayes_min_spam_num 50; bayes_min_ham_num 50` (Bayes waits for 200 of each)",
    )  # fmt: skip
    spamd_children: int | None = setting(
        None, parse.optional_positive_int,
        "spamd children `mailscan up` starts; unset: as many as the CPUs it may use "
        "(CPU affinity and cgroup quota), as more only make each message cost more CPU",
        shown="the usable CPUs",
    )  # fmt: skip
    # As spamc's default --max-size (500 KiB) and amavisd-new's share for SpamAssassin.
    spam_max_bytes: int = setting(
        512_000, parse.positive_int,
        "the most SpamAssassin is given of a message: a larger one is cut after its last "
        "whole MIME part that fits (else at a line end), its header block kept, and its "
        "`X-Spam-Status` ends `(first N bytes of M scanned)`; mail is never skipped for "
        "size. Learning (`mailscan learn`, the console) teaches Bayes the same head",
    )  # fmt: skip
    command_scanner: tuple[str, ...] = setting(
        (), parse.command_line,
        "command line of the `command` engine; the message on stdin, or in a file where "
        "`{file}` stands",
    )  # fmt: skip
    command_clean_codes: frozenset[int] = setting(
        frozenset({0}), parse.codes, "exit codes meaning clean, comma-separated"
    )
    command_infected_codes: frozenset[int] = setting(
        frozenset({1}), parse.codes,
        "exit codes meaning infected; any code neither clean nor infected is a scan error",
    )  # fmt: skip
    command_virus_pattern: str = setting(
        r"(?P<name>[\w.\-/]+)\s+FOUND", parse.regex,
        "regular expression whose group `name` is the virus name in the output",
    )  # fmt: skip
    command_timeout_s: float = setting(60.0, parse.seconds, "the command is killed after this")
    builtin_rules_dir: Path = computed(
        lambda: Path(__file__).parents[2] / "rules", Path,
        "folder of `*.yar` rules of the built-in engine", shown="shipped `tasks/rules`",
    )  # fmt: skip
    chaos: tuple[tuple[str, str], ...] = setting(
        tuple((action, "marker") for action in CHAOS_ACTIONS), parse.chaos,
        "faults of the `chaos` plugin: `action@marker` or `action@FRACTION`, comma-separated",
        shown="every action on its marker",
    )  # fmt: skip
    banned_extensions: tuple[str, ...] = setting(
        BANNED_EXTENSIONS, parse.extensions,
        "file name extensions the `banned` engine refuses, at any depth inside archives, "
        "comma-separated; also hidden behind another (`invoice.pdf.exe`); empty: none",
        section="Banned attachments",
    )  # fmt: skip
    banned_types: tuple[str, ...] = setting(
        BANNED_TYPES, parse.content_types,
        "content types the `banned` engine refuses, by what the bytes are (libmagic), not by "
        "the declared type; binary files only (text is known by its name); empty: none",
    )  # fmt: skip
    ban_encrypted_archives: bool = setting(
        True, parse.boolean,
        "`yes`: an encrypted archive (zip, 7z, rar) is refused, since no engine can see inside",
    )  # fmt: skip
    banned_max_archive_depth: int = setting(
        8, parse.positive_int,
        "archives inside archives are opened this deep; one nested deeper is refused",
    )  # fmt: skip
    banned_max_unpacked_bytes: int = setting(
        64 * 1024 * 1024, parse.positive_int,
        "the most bytes the `banned` engine unpacks from one message's archives; a message "
        "needing more (an archive bomb) is refused",
        shown="`67108864` (64 MiB)",
    )  # fmt: skip
    banned_max_archive_members: int = setting(
        5000, parse.positive_int,
        "the most files the `banned` engine looks at in one message's archives; a message "
        "with more is refused",
    )  # fmt: skip
