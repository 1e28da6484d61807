"""The SMTP front's settings: where it listens, who may send, its limits, TLS."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tasks import network_parsers as netparse
from tasks import setting_parsers as parse
from tasks.setting_parsers import Endpoint, Mode
from tasks.settings.declare import computed, setting


@dataclass(frozen=True)
class FrontSettings:
    """The ``SMTP front`` and ``SMTP TLS`` sections of the settings."""

    smtp_host: str = setting("127.0.0.1", str, "where the SMTP front listens", section="SMTP front")
    smtp_port: int = setting(2525, parse.port, "the SMTP front's port")
    smtp_allow_networks: tuple[netparse.Network, ...] | None = setting(
        None, netparse.networks,
        "clients that may send mail to the SMTP front: networks (CIDR) or addresses, "
        "comma-separated; any other client is answered `554 5.7.1` instead of the greeting, "
        "and nothing it sends is taken. An IPv4 client of an IPv6 socket is matched as IPv4. "
        "A relaying front (`MAILSCAN_DELIVERY=relay`) does not start when it listens beyond "
        "loopback without this, or when this takes in every address (`0.0.0.0/0`) and "
        "`MAILSCAN_RELAY_DOMAINS` is unset",
        shown="`127.0.0.0/8,::1` (this host only)",
    )  # fmt: skip
    relay_domains: tuple[str, ...] = setting(
        (), netparse.domains,
        "the recipient domains the SMTP front takes mail for, comma-separated: `example.com` "
        "is that domain alone, `.example.com` every subdomain of it (list both for both); any "
        "other recipient is refused with `554 5.7.1 Relay access denied`. Unset: every "
        "recipient of an allowed client",
        shown="unset",
    )  # fmt: skip
    xforward_networks: tuple[netparse.Network, ...] = setting(
        netparse.networks("127.0.0.0/8,::1"), netparse.networks_or_none,
        "clients (an MTA in front, such as Postfix's `content_filter`) that are offered "
        "XFORWARD and may use it to name their own client: its address and HELO then go "
        "into our `Received` line and what SpamAssassin sees, in place of the MTA's. "
        "Networks (CIDR) or addresses, comma-separated, or `none`; anyone else is answered "
        "`550 5.7.0`",
        shown="`127.0.0.0/8,::1` (this host only)",
    )  # fmt: skip
    max_message_bytes: int = setting(
        25 * 1024 * 1024, parse.positive_int,
        "larger messages are refused with 552; also the largest file `mailscan learn` and "
        "the console's upload of a delivered message take to teach Bayes",
        shown="`26214400` (25 MiB)",
    )  # fmt: skip
    milter: Endpoint | None = setting(
        Endpoint(port=7357), parse.endpoint_or_off,
        "the milter front for Postfix's `smtpd_milters` (protocol 6), as `HOST:PORT`, "
        "`unix:/path` or `off`. `mailscan up` and `mailscan serve` start it beside the SMTP "
        "front, `mailscan milter` alone. It answers like the pre-queue front, whatever "
        "`MAILSCAN_MODE` says. A Unix socket is made writable by every user (Postfix runs as "
        "its own): the folder it is in decides who reaches it",
        shown="`127.0.0.1:7357`",
    )  # fmt: skip
    mode: Mode = setting("pre-queue", parse.choice(*parse.MODES), "`pre-queue` or `post-queue`")
    smtp_max_line_bytes: int = setting(
        1024 * 1024, parse.positive_int,
        "a message with a longer line (its CRLF included) is refused with `552 5.3.4`. RFC "
        "5321 says 1000, but real mail carries longer lines and the MTAs in front of a filter "
        "pass them on; a line of a megabyte is no mail, only work for the scanners",
        shown="`1048576` (1 MiB)",
    )  # fmt: skip
    smtp_max_header_bytes: int = setting(
        512 * 1024, parse.positive_int,
        "a message whose header section is larger is refused with `552 5.3.4` (Postfix "
        "keeps 100 KiB of it, so mail that came through one is well below)",
        shown="`524288` (512 KiB)",
    )  # fmt: skip
    smtp_data_idle_timeout_s: float = setting(
        300.0, parse.seconds,
        "a client silent this long during DATA gets `421 4.4.2` and is disconnected (the "
        "five minutes of RFC 5321 4.5.3.2)",
    )  # fmt: skip
    smtp_data_min_rate_bytes_per_s: int = setting(
        500, parse.positive_int,
        "during DATA every byte received gives the client 1/this seconds more, up to "
        "`MAILSCAN_SMTP_DATA_IDLE_TIMEOUT_S` in hand (Postfix's `smtpd_min_data_rate`): a "
        "sender this fast or faster always finishes, whatever its message's size; a slower "
        "one runs out of time and gets `421 4.4.2`",
    )  # fmt: skip
    message_memory_bytes: int = setting(
        256 * 1024 * 1024, parse.positive_int,
        "the most bytes of messages over 256 KiB the mailserver holds in memory at once to "
        "scan and deliver them; the others wait their turn in the spool (a pre-queue "
        "client waits with them). Messages arrive into the spool as they are sent, so "
        "a session holds only a buffer while its DATA arrives",
        shown="`268435456` (256 MiB)",
    )  # fmt: skip
    post_queue_virus: Literal["quarantine", "discard"] = setting(
        "quarantine", parse.choice(*parse.POST_QUEUE_VIRUS),
        "post-queue: what becomes of a message carrying a virus, which was answered 250 "
        "before its scan and must never become a bounce to its (usually forged) sender: "
        "`quarantine` keeps it in the quarantine folder, `discard` drops it (the outcome is "
        "logged and shown in the console either way)",
    )  # fmt: skip
    scan_deadline_s: float = setting(
        60.0, parse.seconds, "how long an SMTP session waits for both verdicts"
    )
    max_queued_jobs: int = setting(
        1000, parse.positive_int,
        "pre-queue admission: new mail is refused with `451 4.3.2` at once while a pool's "
        "oldest waiting scan job has waited more than half of `MAILSCAN_SCAN_DEADLINE_S` "
        "(health probes and other jobs in the queue do not count), or more jobs than this "
        "wait, instead of being accepted only to time out",
    )  # fmt: skip
    smtp_max_recipients: int = setting(
        1000, parse.positive_int,
        "recipients one message may have; each further RCPT is answered `452 4.5.3 Too many "
        "recipients` and the message goes to those accepted (the client sends the rest again)",
    )  # fmt: skip
    smtp_max_commands: int = setting(
        10000, parse.positive_int,
        "how often one session may send each of MAIL, RCPT, DATA and RSET (a client may send "
        "many messages over one connection); past it `421 4.7.0` and the connection closes",
    )  # fmt: skip
    smtp_max_other_commands: int = setting(
        100, parse.positive_int,
        "how often one session may send each other command (EHLO, NOOP, VRFY, HELP...); past "
        "it `421 4.7.0`. Past five unknown commands the session ends the same way",
    )  # fmt: skip
    smtp_max_errors: int = setting(
        20, parse.positive_int,
        "error replies (5xx: malformed or misplaced commands, refused recipients) a session "
        "may have since its last message; the next error is `421 4.7.0` and the end",
    )  # fmt: skip
    smtp_max_connections: int = setting(
        500, parse.positive_int,
        "SMTP connections held at once; a further one hears `421 4.7.0 Too many connections` "
        "instead of the greeting and is closed",
    )  # fmt: skip
    smtp_max_connections_per_client: int = setting(
        50, parse.positive_int,
        "SMTP connections held at once from one client address, the same way. Behind an MTA "
        "(content filter, proxy) every connection comes from its address: allow its number "
        "of SMTP processes",
    )  # fmt: skip
    smtp_command_timeout_s: float = setting(
        300.0, parse.seconds,
        "how long a session may wait before its next command (RFC 5321 4.5.3.2); then `421 "
        "4.4.2` and the connection closes. The DATA phase has its own clock "
        "(`MAILSCAN_SMTP_DATA_IDLE_TIMEOUT_S`); time spent scanning does not count",
    )  # fmt: skip
    smtp_session_timeout_s: float = setting(
        1800.0, parse.seconds,
        "the longest an SMTP session lasts, however busy; then `421 4.4.2` and the connection "
        "closes (a reply the client waits for is given first)",
    )  # fmt: skip
    virus_sender_notice: bool = setting(
        False, parse.boolean,
        "post-queue, relay delivery: `yes` sends the envelope sender of a message that "
        "carried a virus a short notice (its recipients, the virus, its Message-ID; never "
        "the message nor its header), from the empty sender through the relay. Off by "
        "default: a virus's sender is usually forged, and the notice would go to an "
        "innocent (backscatter)",
    )  # fmt: skip
    hostname: str = computed(
        lambda: os.uname().nodename, parse.header_text,
        "used in the SMTP greeting, `Received` lines and worker names",
        shown="the machine's name",
    )  # fmt: skip
    spam_quarantine_score: float | None = setting(
        None, parse.optional_score,
        "spam at or above this score goes to the quarantine instead of the Maildir",
    )  # fmt: skip
    spam_subject_tag: str = setting(
        "", parse.header_text,
        "e.g. `[SPAM]`, put in front of the subject of spam, as it is written (one line)",
    )  # fmt: skip
    policy_file: Path | None = setting(
        None, parse.optional_path,
        "TOML file of rules per recipient domain and address: spam scores, subject tag, "
        "banned attachments on or off and their extension list, failure policies, sender "
        "allow and block lists, a "
        "bypass (docs/policy.md). Checked at start; `mailscan reload` (or SIGHUP to the "
        "front) reads it again without a restart. Unset: the settings here apply to every "
        "recipient",
    )  # fmt: skip
    tls_cert: Path | None = setting(
        None, parse.optional_path,
        "PEM certificate (its chain after it) the SMTP front offers with STARTTLS; with "
        "`MAILSCAN_TLS_KEY`, both or neither; TLS 1.2 or newer. Unset: no STARTTLS "
        "(`mailscan up --tls` makes a self-signed pair in `var/tls/`)",
        section="SMTP TLS",
    )  # fmt: skip
    tls_key: Path | None = setting(
        None, parse.optional_path, "PEM private key of `MAILSCAN_TLS_CERT`, without passphrase"
    )
    tls_required: bool = setting(
        False, parse.boolean,
        "`yes`: every command but EHLO, STARTTLS, NOOP, RSET and QUIT is answered `530 5.7.0 "
        "Must issue a STARTTLS command first` until the client has started TLS",
    )  # fmt: skip
