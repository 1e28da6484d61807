"""Everything mailscan can be told: each setting with its default, its parser and what it
means (docs/settings.md is rendered from here)."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tasks import setting_parsers as parse
from tasks.redisauth import masked
from tasks.setting_parsers import CHAOS_ACTIONS, Endpoint, Mode
from tasks.settings.declare import computed, folder, setting
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
class Settings:
    """Everything mailscan can be told, with units in the names; the pools' own settings in
    ``pools``."""

    redis_url: str = setting(
        "redis://127.0.0.1:6390/0", parse.redis_url,
        "broker, result backend and message store (`rediss://` for TLS); may carry the "
        "password, `redis://:PASSWORD@host:port/0`. Shown everywhere (status, logs, "
        "`mailscan up`) with the password masked",
        section="Redis", mask=masked,
    )  # fmt: skip
    redis_password_file: Path = folder(
        "redis/password",
        "the Redis password when the URL carries none; every client (pools, front, beat, "
        "Flower, console, the `mailscan` command) reads it. `mailscan up` makes one there on "
        "its first start (mode 600) and gives it to its Redis through `var/redis/redis.conf` "
        "(mode 600), never on a command line. No file, no password",
    )
    redis_sentinels: tuple[Endpoint, ...] = setting(
        (), parse.sentinels,
        "Redis under Sentinel: the sentinels as `HOST:PORT,HOST:PORT,...`. Every client "
        "(pools, front, beat, Flower, console, the `mailscan` command) then asks them for the "
        "current primary and finds the new one after a failover; `MAILSCAN_REDIS_URL` gives "
        "only the password and the database number (and, for `MAILSCAN_LOCAL_REDIS=sentinel`, "
        "the first primary's port). The sentinels take the same password as Redis. Empty: "
        "the URL names Redis itself",
        shown="none; with `MAILSCAN_LOCAL_REDIS=sentinel`, the Redis port + 20000, +20001, +20002",
    )  # fmt: skip
    redis_master: str = setting(
        "mailscan", parse.master_name, "the primary's name, as the sentinels monitor it"
    )
    local_redis: str = setting(
        "single", parse.choice(*parse.LOCAL_REDIS),
        "what `mailscan up` starts: `single`, one Redis; `sentinel`, a primary (the URL's "
        "port), one replica (that port + 1) and three sentinels (`MAILSCAN_REDIS_SENTINELS`), "
        "all on loopback with the password",
    )  # fmt: skip
    local_sentinel_down_after_s: float = setting(
        5.0, parse.seconds,
        "with `MAILSCAN_LOCAL_REDIS=sentinel`: how long the primary must not answer before "
        "the sentinels promote the replica",
    )  # fmt: skip
    blob_ttl_s: int = setting(
        24 * 3600, parse.positive_int,
        "the longest message bytes stay in Redis for the pools; they are removed as soon as "
        "the message has its outcome, and kept in memory only (not in Redis's append-only file)",
    )  # fmt: skip
    smtp_host: str = setting("127.0.0.1", str, "where the SMTP front listens", section="SMTP front")
    smtp_port: int = setting(2525, parse.port, "the SMTP front's port")
    smtp_allow_networks: tuple[parse.Network, ...] | None = setting(
        None, parse.networks,
        "clients that may send mail to the SMTP front: networks (CIDR) or addresses, "
        "comma-separated; any other client is answered `554 5.7.1` instead of the greeting, "
        "and nothing it sends is taken. An IPv4 client of an IPv6 socket is matched as IPv4. "
        "A relaying front (`MAILSCAN_DELIVERY=relay`) does not start when it listens beyond "
        "loopback without this, or when this takes in every address (`0.0.0.0/0`) and "
        "`MAILSCAN_RELAY_DOMAINS` is unset",
        shown="`127.0.0.0/8,::1` (this host only)",
    )  # fmt: skip
    relay_domains: tuple[str, ...] = setting(
        (), parse.domains,
        "the recipient domains the SMTP front takes mail for, comma-separated: `example.com` "
        "is that domain alone, `.example.com` every subdomain of it (list both for both); any "
        "other recipient is refused with `554 5.7.1 Relay access denied`. Unset: every "
        "recipient of an allowed client",
        shown="unset",
    )  # fmt: skip
    xforward_networks: tuple[parse.Network, ...] = setting(
        parse.networks("127.0.0.0/8,::1"), parse.networks_or_none,
        "clients (an MTA in front, such as Postfix's `content_filter`) that are offered "
        "XFORWARD and may use it to name their own client: its address and HELO then go "
        "into our `Received` line and what SpamAssassin sees, in place of the MTA's. "
        "Networks (CIDR) or addresses, comma-separated, or `none`; anyone else is answered "
        "`550 5.7.0`",
        shown="`127.0.0.0/8,::1` (this host only)",
    )  # fmt: skip
    max_message_bytes: int = setting(
        25 * 1024 * 1024, parse.positive_int, "larger messages are refused with 552",
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
    spam_max_bytes: int = setting(
        1024 * 1024, parse.positive_int,
        "larger messages are not spam-scanned (`X-Spam-Status: No, not scanned`)",
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
        lambda: Path(__file__).parents[1] / "rules", Path,
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
    max_attempts: int = setting(
        3, parse.positive_int,
        "a message that killed or froze a plugin this often is given up as unscannable",
        section="Isolation and crashdumps",
    )  # fmt: skip
    breaker_failures: int = setting(
        5, parse.positive_int, "a plugin's circuit breaker opens after this many failures"
    )
    breaker_window_s: float = setting(
        30.0, parse.seconds, "the window in which the breaker counts a plugin's failures"
    )
    breaker_cooldown_s: float = setting(
        15.0, parse.seconds, "how long an open breaker stays open; it is probed in the background"
    )
    crashdump_dir: Path = folder(
        "crashdumps",
        "crashdumps waiting for Redis, and the per-process files of the pool processes",
    )
    crashdump_full_every_s: float = setting(
        60.0, parse.seconds,
        "one full crashdump per failure signature in each window of this many seconds; every "
        "further incident only counts in its group (count, last seen), so a plugin failing on "
        "every message cannot fill Redis",
    )  # fmt: skip
    crashdump_max_age_days: int = setting(90, parse.positive_int, "crashdump retention: age")
    crashdump_max_count: int = setting(10000, parse.positive_int, "crashdump retention: count")
    var_dir: Path = setting(
        Path("var"), Path,
        "data folder of `mailscan up`; the spool, Maildir, quarantine, crashdumps, Redis "
        "password and console users default to places in it",
        section="Spool and delivery",
    )  # fmt: skip
    spool_dir: Path = folder("spool", "the durable spool of the SMTP front")
    maildir: Path = folder("maildir", "where `maildir` delivery puts mail")
    quarantine_dir: Path = folder("quarantine", "quarantined messages and their records")
    delivery: Literal["maildir", "relay"] = setting(
        "maildir", parse.choice(*parse.DELIVERIES),
        "`maildir`, or `relay` to hand mail to the next hop",
    )  # fmt: skip
    relay: Endpoint = setting(Endpoint(port=25), parse.endpoint, "next hop for `relay`")
    relay_connections: int = setting(
        4, parse.positive_int,
        "connections to the next hop kept open between messages (each checked with RSET "
        "before a message, closed after 30 s idle); more deliveries at once open their own "
        "for the time of their message",
    )  # fmt: skip
    # Redis's time per byte grows with the size (bench/README.md).
    shared_spool_from_bytes: int = setting(
        1024 * 1024, parse.size_or_off,
        "messages this big or bigger reach the pools as their spool file, through the spool "
        "folder the pools share with the SMTP front (read-only is enough), instead of through "
        "Redis; `0` when the pools cannot read that folder (pools on other machines). A front "
        "that hears from a pool, by a job or a health probe, that it cannot read the spool "
        "sends big messages through "
        "Redis, and logs so once, until every pool's health probe sees the spool again",
    )  # fmt: skip
    redrive_interval_s: float = setting(
        30.0, parse.seconds, "how often the spool is checked for unfinished mail"
    )
    delivery_retry_s: float = setting(
        60.0, parse.seconds,
        "a failed delivery (next hop away or answering 4xx, a Maildir that cannot be "
        "written) is tried again after this, then twice as long each time up to an hour, "
        "only to the recipients that still wait, from the verdicts kept with the spool "
        "entry (`spool/retry/`): no rescan",
    )  # fmt: skip
    spool_max_lifetime_s: float = setting(
        5 * 86400.0, parse.seconds,
        "a spool entry without a final outcome this long after its 250 goes to `spool/dead/` "
        "(the message, and beside it a JSON with the reason, envelope, verdicts and "
        "attempts), with an alarm; in relay mode its sender gets a DSN (never an empty sender "
        "`<>`). A recipient the next hop refuses with 5xx is dead-lettered at once the same "
        "way. An entry that cannot be read goes to `spool/corrupt/` at once, with an alarm",
        shown="`432000` (5 days)",
    )  # fmt: skip
    spool_alarm_age_s: float = setting(
        900.0, parse.seconds, "beat raises an alarm for mail held this long without an outcome"
    )
    database_url: str = setting(
        "", parse.database_url,
        "the message log's database: `postgresql://USER:PASSWORD@HOST:PORT/NAME` for several "
        "fronts (one database for all), or `sqlite:///PATH`. Every front, the console, beat "
        "and the `mailscan messages` command use it",
        shown="SQLite in `var/messagelog/messages.db`", section="Message log", mask=masked,
    )  # fmt: skip
    message_log_dir: Path = folder(
        "messagelog",
        "the SQLite message log (when no URL is set), and `journal/`: each front's outcomes "
        "not yet in the database (written there first, so a database that is away holds up "
        "no reply and loses no outcome)",
    )
    message_log_days: int = setting(
        30, parse.positive_int, "the message log keeps outcomes this many days (beat prunes it)"
    )
    flower_port: int = setting(
        5555, parse.port, "Flower, started by `mailscan up` on loopback", section="Operations"
    )
    flower_user: str = setting("admin", str, "Flower's basic authentication: the user")
    flower_password: str = setting(
        "", str, "Flower's basic authentication: the password",
        shown="made once into `var/flower/password`",
    )  # fmt: skip
    task_events: bool = setting(
        False, parse.boolean,
        "`yes`: the pools send task events all the time; `no`: only after a Flower asks for "
        "them (it does every 5 s while it runs, `mailscan up` as soon as its Flower is ready), "
        "which saves each pool the events' CPU on every job",
    )  # fmt: skip
    log_jobs: bool = setting(
        False, parse.boolean,
        "`yes`: the pools log Celery's \"received\" and \"succeeded\" lines for every job "
        "(two per job and pool, about 8 % of a pool's CPU); "
        "failures, crashes and health probes are logged either way, and the mailserver logs "
        "every message's outcome",
    )  # fmt: skip
    metrics_host: str = setting("127.0.0.1", str, "Prometheus endpoint of the mailserver: host")
    metrics_port: int = setting(9125, parse.port, "Prometheus endpoint of the mailserver: port")
    health_probe_every_s: float = setting(30.0, parse.seconds, "beat's health probe period")
    stats_every_s: float = setting(60.0, parse.seconds, "beat's queue snapshot period")
    backlog_autoscaler: bool = setting(
        False, parse.boolean, "the backlog autoscaler (beat), within each pool's scale limits"
    )
    backlog_per_process: int = setting(
        4, parse.positive_int, "queued jobs the backlog autoscaler gives each process"
    )
    console_host: str = setting(
        "127.0.0.1", str, "where the admin console listens", section="Admin console"
    )
    console_port: int = setting(8025, parse.port, "the admin console's port")
    console_users_file: Path = folder(
        "console/users.json", "administrators and their argon2 password hashes (mode 600)"
    )
    console_session_max_s: float = setting(
        12 * 3600.0, parse.seconds,
        "a console session ends this long after its login, however busy; logging out, a "
        "new password (`mailscan console adduser`) or `mailscan console deluser` end it "
        "at once",
        shown="`43200` (12 hours)",
    )  # fmt: skip
    console_secure_cookies: bool = setting(
        False, parse.boolean,
        "`yes`: the session cookie is marked `Secure`, sent by browsers over HTTPS only; "
        "set it when the console is reached through a TLS proxy",
    )  # fmt: skip
    console_secret: str = setting(
        "", parse.secret,
        "signs the session cookies and keys the address hashes of crash reports (32 "
        "characters or more)",
        shown="made once into `var/console/secret`",
    )  # fmt: skip
    assist_prompt: str = computed(
        lambda: platform_assist_prompt(sys.platform), parse.choice(*parse.ASSIST_PROMPTS),
        "when the crash-report dialog appears: at once in every open console (`immediate`), "
        "or at the next console start (`next-start`)",
        shown="`next-start` on macOS, `immediate` elsewhere",
    )  # fmt: skip
    assist_url: str = setting(
        "", parse.assist_url,
        "where crash reports are sent (HTTPS; `http://` only to a loopback host); unset: "
        "Send saves the report for download",
    )  # fmt: skip
    assist_token: str = setting("", str, "the bearer token sent with crash reports")

    def with_pool(self, pool: str, **changes: Any) -> Settings:
        """These settings with ``changes`` made to one pool's (tests, benchmarks)."""
        return dataclasses.replace(self, pools=self.pools.changed(pool, **changes))


def platform_assist_prompt(platform: str) -> str:
    """When the original product asks about a crash: at the next console start on macOS,
    at once in every open console elsewhere (Windows)."""
    return "next-start" if platform == "darwin" else "immediate"
