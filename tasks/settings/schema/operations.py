"""Isolation and crashdumps, the spool and delivery, the message log, operations and the console."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tasks import setting_parsers as parse
from tasks.redisauth import masked
from tasks.setting_parsers import Endpoint
from tasks.settings.declare import computed, folder, setting


@dataclass(frozen=True)
class OperationSettings:
    """The sections from ``Isolation and crashdumps`` to ``Admin console``."""

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


def platform_assist_prompt(platform: str) -> str:
    """When the original product asks about a crash: at the next console start on macOS,
    at once in every open console elsewhere (Windows)."""
    return "next-start" if platform == "darwin" else "immediate"
