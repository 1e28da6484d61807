"""What the console tests share: adding an administrator with the real command, and an HTTP
client logged in through the real login form."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from mailserver.supervisor.stack import Stack
from tasks.settings import load_settings

ADMIN, PASSWORD = "admin", "correct horse battery"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@contextmanager
def console_only(env: dict[str, str]) -> Iterator[Stack]:
    """The console alone, on the Redis and folders ``env`` names; stopped at the end."""
    console = Stack(load_settings(env), env)
    try:
        console.start(["console"], progress=lambda _: None)
        yield console
    finally:
        console.stop()


def add_admin(env: dict[str, str], name: str = ADMIN, password: str = PASSWORD) -> str:
    """``mailscan console adduser NAME --password-stdin``; returns what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "mailserver.cli", "console", "adduser", name, "--password-stdin"],
        input=password + "\n", capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def csrf_token(html: str) -> str:
    found = _TOKEN.search(html)
    assert found, "the page has no form with a CSRF token"
    return found[1]


def logged_in(base_url: str, name: str = ADMIN, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=30, follow_redirects=True)
    token = csrf_token(client.get("/login").text)
    form = {"name": name, "password": password, "csrf_token": token}
    answer = client.post("/login", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


class ReportReceiver(ThreadingHTTPServer):
    """The vendor's endpoint, on loopback: answers every POST with ``status`` and keeps each
    report it was sent, with its headers."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.status = 200
        self.reports: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/crash-reports"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: ReportReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.reports.append({"headers": dict(self.headers), "json": json.loads(body)})
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def receiving() -> Iterator[ReportReceiver]:
    server = ReportReceiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
