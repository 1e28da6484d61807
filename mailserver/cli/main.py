"""The ``mailscan`` command. Bad arguments and unreachable services end in one clear line
on standard error and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import redis
from kombu.exceptions import OperationalError

from tasks.errors import MailscanError
from tasks.settings import Settings, load_settings

# Exit codes, as virus scanners use them so scripts can branch: found something = 1.
CLEAN, FOUND, FAILED = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command in ("serve", "milter", "up") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiosmtpd logs every SMTP command at INFO; one line per outcome (ours) is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    try:
        return int(args.run(load_settings(), args) or 0)
    except (MailscanError, redis.RedisError, OperationalError) as err:
        print(f"mailscan: {err}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailscan",
        description="Mail scanning: SMTP front, ClamAV and SpamAssassin in isolated pools.",
        epilog="Settings come from MAILSCAN_* environment variables; see docs/settings.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = _command(
        sub, "up", _up, "run the whole system locally in the foreground (Ctrl-C stops it)"
    )
    up.add_argument(
        "--tls",
        action="store_true",
        help="offer STARTTLS with a self-signed certificate made in var/tls/ (local use)",
    )
    _command(sub, "serve", _serve, "run only the SMTP and milter fronts (the workers elsewhere)")
    _command(sub, "milter", _milter, "run only the milter front, for Postfix's smtpd_milters")
    scan = _command(sub, "scan", _scan, "scan one message through the real pools")
    scan.add_argument("file", type=Path, help="the message, as an .eml file")
    scan.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    scan.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    status = _command(sub, "status", _status, "pools, workers, concurrency and queue depths")
    status.add_argument("--json", action="store_true", help="print as JSON")
    _command(sub, "check-config", _check_config, "validate the settings and exit")
    _command(sub, "reload", _reload,
             "check the policy file, then have the running front read it again")  # fmt: skip
    scale = _command(sub, "scale", _scale, "set the number of processes of a pool's workers")
    scale.add_argument("pool", choices=["av", "spam"], help="which pool")
    scale.add_argument("processes", nargs="?", type=int, help="processes per worker")
    scale.add_argument("--autoscale", metavar="MAX,MIN", help="range of Celery's autoscaler")
    pool = _command(sub, "pool", _pool, "run one pool's worker here, sized as `mailscan up` does")
    pool.add_argument("pool", choices=["av", "spam"], help="which pool")
    _crashdump_commands(sub)
    _message_commands(sub)
    _console_commands(sub)
    learn = _command(sub, "learn", _learn, "teach spamd's Bayes messages as spam or ham")
    learn.add_argument("message_class", choices=["spam", "ham"], help="what the messages are")
    learn.add_argument("targets", nargs="+", metavar="FILE|ID",
                       help="an .eml file, or a quarantine id: ham is then released and spam "
                            "deleted from the quarantine, as the console's buttons do")  # fmt: skip
    return parser


def _message_commands(sub: Any) -> None:
    from mailserver.cli.messages import add_arguments

    messages = _command(sub, "messages", _messages, "search the message log, newest first")
    add_arguments(messages)
    messages.add_argument("--json", action="store_true", help="print as JSON")
    actions = messages.add_subparsers(dest="messages_command", metavar="ACTION")
    show = _command(actions, "show", _message_show, "one message's whole record")
    show.add_argument("id", help="the spool id, from 'mailscan messages'")
    show.add_argument("--json", action="store_true", help="print as JSON")


def _messages(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.cli.messages import list_lines, search

    found = search(settings, args)
    if args.json:
        print(json.dumps([record.to_json() for record in found], indent=2))
    else:
        print("\n".join(list_lines(found)))
    return CLEAN


def _message_show(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.cli.messages import get, show_lines

    record = get(settings, args.id)
    print(json.dumps(record.to_json(), indent=2) if args.json else "\n".join(show_lines(record)))
    return CLEAN


def _console_commands(sub: Any) -> None:
    console = sub.add_parser("console", help="the admin console (web) and its administrators")
    console_sub = console.add_subparsers(dest="console_command", required=True, metavar="ACTION")
    _command(console_sub, "serve", _console_serve, "run the admin console in the foreground")
    adduser = _command(console_sub, "adduser", _console_adduser, "add or change an administrator")
    adduser.add_argument("name", help="the administrator's login name")
    adduser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    deluser = _command(
        console_sub, "deluser", _console_deluser, "remove an administrator and end their sessions"
    )
    deluser.add_argument("name", help="the administrator's login name")
    _command(sub, "assist", _assist, "answer waiting crash reports in the terminal")


def _private_files() -> None:
    """Mail is for the service alone: what the SMTP front and the console write (spool,
    Maildir, quarantine, dead letters, reports) is readable by this user only, 0600 files in
    0700 folders, whatever umask the process was started with. ``mailscan up`` starts both
    through ``serve`` and ``console serve``, which call this."""
    os.umask(0o077)


def _console_serve(settings: Settings, _: argparse.Namespace) -> int:
    from mailserver.console.app import serve

    _private_files()
    serve(settings)
    return CLEAN


def _console_adduser(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.console.commands import add_user

    print(add_user(settings, args.name, args.password_stdin))
    return CLEAN


def _console_deluser(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.console.commands import delete_user

    print(delete_user(settings, args.name))
    return CLEAN


def _assist(settings: Settings, _: argparse.Namespace) -> int:
    from mailserver.console.commands import open_assist, run_assist

    run_assist(open_assist(settings))
    return CLEAN


def _learn(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.cli.learn import learn

    _private_files()  # a released message may be delivered to the local Maildir
    for line in learn(settings, args.message_class, args.targets):
        print(line, flush=True)
    return CLEAN


def _crashdump_commands(sub: Any) -> None:
    crashdumps = sub.add_parser("crashdumps", help="list and show crashdump records")
    crash_sub = crashdumps.add_subparsers(dest="crash_command", required=True, metavar="ACTION")
    listing = _command(crash_sub, "list", _crash_list, "crashdumps, newest first, and groups")
    listing.add_argument("--json", action="store_true", help="print as JSON")
    show = _command(crash_sub, "show", _crash_show, "everything one crashdump holds")
    show.add_argument("id", help="the crashdump id, from 'mailscan crashdumps list'")
    show.add_argument("--json", action="store_true", help="print as JSON")


def _command(
    sub: Any, name: str, run: Callable[[Settings, argparse.Namespace], int | None], text: str
) -> argparse.ArgumentParser:
    command = sub.add_parser(name, help=text, description=text)
    command.set_defaults(run=run)
    return command


def _reload(settings: Settings, _: argparse.Namespace) -> int:
    from mailserver.cli.reload import reload_front

    print(reload_front(settings))
    return CLEAN


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.supervisor.up import run_up

    return run_up(settings, self_signed_tls=args.tls)


def _serve(settings: Settings, _: argparse.Namespace, smtp: bool = True) -> int:
    import uvloop

    from mailserver.front.server import serve

    _private_files()
    # The front's loop turns several times for each SMTP command, thread hand-off and
    # verdict; uvloop's turns cost less than asyncio's own.
    uvloop.run(serve(settings, smtp=smtp))
    return CLEAN


def _milter(settings: Settings, args: argparse.Namespace) -> int:
    return _serve(settings, args, smtp=False)


def _scan(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.cli.scanfile import scan_file, verdict_lines
    from tasks.wire.verdicts import to_records

    results = scan_file(settings, args.file, args.timeout)
    if args.json:
        print(json.dumps(to_records(results), indent=2))
    else:
        print("\n".join(verdict_lines(results)))
    statuses = {r.status if r else "error" for r in results.values()}
    if statuses & {"infected", "banned", "spam"}:
        return FOUND
    return FAILED if "error" in statuses else CLEAN


def _status(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.cli.status import collect, status_lines

    report = collect(settings)
    print(json.dumps(report, indent=2) if args.json else "\n".join(status_lines(report)))
    return CLEAN


def _crash_list(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.cli.crashview import list_lines, store

    crashes = store(settings)
    records, groups = crashes.records(), crashes.groups()
    if args.json:
        print(json.dumps({"crashdumps": records, "groups": groups}, indent=2))
    else:
        print("\n".join(list_lines(records, groups)))
    return CLEAN


def _crash_show(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.cli.crashview import show, show_lines

    dump = show(settings, args.id)
    print(json.dumps(dump, indent=2) if args.json else "\n".join(show_lines(dump)))
    return CLEAN


def _scale(settings: Settings, args: argparse.Namespace) -> int:
    from mailserver.cli.scale import scale_lines

    print("\n".join(scale_lines(settings, args.pool, args.processes, args.autoscale)))
    return CLEAN


def _pool(settings: Settings, args: argparse.Namespace) -> NoReturn:
    from mailserver.cli.pool import run_pool

    run_pool(settings, args.pool)


def _check_config(settings: Settings, _: argparse.Namespace) -> int:
    from mailserver.front.access import check_exposure
    from mailserver.front.policies.loading import load_policies
    from mailserver.front.tls import StartTLS
    from mailserver.supervisor.up import check_plugins

    check_plugins(settings)
    StartTLS.from_settings(settings)
    check_exposure(settings)  # what the SMTP front would refuse to start with
    load_policies(settings)
    print("configuration is valid")
    return CLEAN


if __name__ == "__main__":
    sys.exit(main())
