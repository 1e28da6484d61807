"""The console's commands: ``mailscan console adduser``, ``deluser`` and ``serve``, and
``mailscan assist``, the assist dialog in a terminal for servers without a browser."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from typing import TextIO

from mailserver.console.assist import Assist, PendingGroup, payload_text
from mailserver.console.auth import UserFile
from tasks.errors import MailscanError
from tasks.settings import Settings

Ask = Callable[[str], str]
SEND_ANSWERS = {"s": "send", "send": "send", "d": "decline", "don't send": "decline",
                "n": "decline", "l": "later", "later": "later"}  # fmt: skip
REMEMBER_ANSWERS = {"": "ask", "a": "ask", "ask": "ask", "y": "always", "always": "always",
                    "n": "never", "never": "never"}  # fmt: skip


def add_user(settings: Settings, name: str, from_stdin: bool) -> str:
    password = _password_from_stdin() if from_stdin else _password_twice()
    users = UserFile(settings.console_users_file)
    known = name in users.names()
    users.add(name, password)
    said = f"administrator {name!r} saved in {settings.console_users_file}"
    # The sessions remember the password they began with (sessions.py).
    return said + ("; their console sessions have ended" if known else "")


def delete_user(settings: Settings, name: str) -> str:
    UserFile(settings.console_users_file).remove(name)
    return (
        f"administrator {name!r} removed from {settings.console_users_file}; "
        "their console sessions have ended"
    )


def _password_from_stdin() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise MailscanError("no password on standard input")
    return password


def _password_twice() -> str:
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise MailscanError("the two passwords differ; nothing saved")
    return first


def open_assist(settings: Settings) -> Assist:
    from mailserver.console.site import open_console

    return open_console(settings).assist


def run_assist(assist: Assist, ask: Ask = input, out: TextIO = sys.stdout) -> int:
    """Ask about each group of crashdumps waiting for an answer; return how many answered."""
    who = f"{login_name()} (terminal)"
    answered = 0
    groups = assist.pending()
    if not groups:
        print("No crashdump waits for an answer.", file=out)
    try:
        for group in groups:
            answered += _ask_group(assist, group, who, ask, out)
    except EOFError:
        print("\nNo more answers; the rest waits for the next time.", file=out)
    return answered


def _ask_group(assist: Assist, group: PendingGroup, who: str, ask: Ask, out: TextIO) -> bool:
    first = group.records[0]
    print(f"\n{first['plugin'].get('name')} in the {first['pool']} pool failed "
          f"({first['kind']} {first['exception']['type']}) {len(group.records)} time(s). "
          "This is exactly what would be sent:\n", file=out)  # fmt: skip
    print(payload_text(assist.payload(group.records)), file=out)
    choice = _choose(ask, "Send this report? [s]end / [d]on't send / [l]ater: ", SEND_ANSWERS)
    if choice == "later":
        return False
    prompt = "For crashes like this: [a]sk every time / always send [y] / never send [n]: "
    remember = _choose(ask, prompt, REMEMBER_ANSWERS)
    done = assist.answer(group.ids, choice == "send", who, remember)
    print(_result(done.state, len(done.ids), done.report_file), file=out)
    return True


def _choose(ask: Ask, prompt: str, answers: dict[str, str]) -> str:
    while True:
        reply = ask(prompt).strip().lower()
        if reply in answers:
            return answers[reply]


def _result(state: str, count: int, report_file: object) -> str:
    if not count:
        return "Someone else answered meanwhile; nothing done."
    if state == "saved":
        return f"No endpoint configured: the report was saved as {report_file}; pass it on."
    if state == "queued":
        return f"Report of {count} crashdump(s) queued; the ops worker sends it."
    return f"{count} crashdump(s) will not be sent."


def login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
