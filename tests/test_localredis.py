"""The local stack's Redis (the tests' too: they start it through the same Stack) takes no
command without its password, and the password shows nowhere a local user could read it:
not in a command line, not in a service's log, not in what mailscan prints."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from urllib.parse import urlsplit

import pytest

from mailserver.supervisor import localredis
from tasks import redisauth
from tests.conftest import mailscan

pytestmark = pytest.mark.integration


def test_redis_refuses_a_client_without_the_password(stack, settings):
    port = urlsplit(settings.redis_url).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as anonymous:
        anonymous.sendall(b"GET mailscan:spool\r\n")
        assert anonymous.recv(200).startswith(b"-NOAUTH")
    assert redisauth.connect(settings).ping()  # as every client of the stack connects


def test_the_password_is_made_once_and_kept_in_files_only_its_owner_reads(stack, settings):
    secret = settings.redis_password_file.read_text().strip()
    assert len(secret) >= 24
    assert localredis.ensure_password(settings) == secret  # made once, then kept
    config = localredis.config_path(settings)
    for path in (settings.redis_password_file, config):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert f'requirepass "{secret}"' in config.read_text()


def test_the_password_is_in_no_command_line_and_no_log(stack, settings):
    secret = redisauth.password(settings)
    everyone = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True)
    assert f"-n av@{settings.hostname}" in everyone.stdout  # it lists the stack's processes
    assert secret not in everyone.stdout
    for log in stack.log_dir.glob("*.log"):
        assert secret not in log.read_text(errors="replace"), log


def test_status_shows_a_redis_url_with_its_password_masked(stack, settings):
    secret = redisauth.password(settings)
    url = redisauth.with_password(settings.redis_url, secret)
    shown = mailscan("status", "--json", env={**os.environ, "MAILSCAN_REDIS_URL": url})
    assert shown.returncode == 0, shown.stderr
    redis = json.loads(shown.stdout)["redis"]
    assert redis["url"] == redisauth.masked(url)
    assert redis["primary"] == f"127.0.0.1:{urlsplit(url).port}"
    assert redis["replicas"] == []
    assert ":***@" in redisauth.masked(url)
    assert secret not in shown.stdout + shown.stderr
