"""`mailscan up`: the whole system starts, says where everything is, and stops cleanly."""

import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks import sizing
from tests.conftest import make_message, port, send, stack_env, wait_for

pytestmark = pytest.mark.integration
OFFSET = 5


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def assert_the_redis_password_kept_secret(env: dict[str, str], printed: str) -> None:
    """Every service of `mailscan up` runs against a Redis that wants the password, which
    shows in no command line, no log and nothing printed."""
    password_file = env["MAILSCAN_REDIS_PASSWORD_FILE"]
    secret = Path(password_file).read_text().strip()
    assert f"password in {password_file}" in printed
    redis_port = int(env["MAILSCAN_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", redis_port), timeout=5) as anonymous:
        anonymous.sendall(b"PING\r\n")
        assert anonymous.recv(200).startswith(b"-NOAUTH")
    everyone = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True)
    assert "flower" in everyone.stdout
    assert secret not in everyone.stdout + printed
    logs = list((Path(env["MAILSCAN_VAR_DIR"]) / "log").glob("*.log"))
    assert {"flower.log", "beat.log", "console.log", "av-worker.log"} <= {p.name for p in logs}
    for log in logs:
        assert secret not in log.read_text(errors="replace"), log


def assert_starttls_with_the_self_signed_pair(env: dict[str, str], smtp_port: int, printed: str):
    """`up --tls`: the front offers STARTTLS with the certificate it made under var/tls/,
    whose key only its owner reads, and says so."""
    folder = Path(env["MAILSCAN_VAR_DIR"]) / "tls"
    assert f"STARTTLS with a self-signed certificate: {folder / 'cert.pem'}" in printed
    assert (folder / "key.pem").stat().st_mode & 0o777 == 0o600
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
        client.starttls(context=ssl.create_default_context(cafile=folder / "cert.pem"))
        assert client.sock.getpeercert()["subject"]  # verified against the pair made
        assert client.noop()[0] == 250


def test_up_runs_everything_and_leaves_nothing_behind_on_sigterm(tmp_path):
    env = stack_env("up", OFFSET, console_port=str(port(18025) + 10 * OFFSET),
                    milter=f"127.0.0.1:{port(17357) + 10 * OFFSET}")  # fmt: skip
    ports = [int(env[f"MAILSCAN_{name}"].rsplit(":", 1)[-1].split("/")[0])
             for name in ("SMTP_PORT", "FLOWER_PORT", "METRICS_PORT", "CONSOLE_PORT", "CLAMD",
                          "SPAMD", "MILTER")]  # fmt: skip
    output = tmp_path / "up.out"
    with open(output, "wb") as sink:
        command = [sys.executable, "-m", "mailserver.cli", "up", "--tls"]
        up = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(lambda: b"mailscan is up" in output.read_bytes() or up.poll() is not None, 180,
                 "mailscan up to report ready")  # fmt: skip
        text = output.read_text()
        assert "mailscan is up" in text, text
        for service in ("SMTP front", "milter", "Flower", "av pool", "spam pool", "logs"):
            assert service in text
        assert "body rules " in text  # whether spamd runs them compiled, and what to do if not
        cpus = sizing.this_machine().count  # how many spamd children and processes, and why
        assert f"{cpus} children ({cpus} usable CPUs; MAILSCAN_SPAMD_CHILDREN unset;" in text
        assert (f"{cpus} processes (as many as spamd's children; MAILSCAN_SPAM_CONCURRENCY "
                "unset), plugins spamassassin") in text  # fmt: skip
        smtp_port = int(env["MAILSCAN_SMTP_PORT"])
        assert send(make_message(X_Test_Id="up-1"), smtp_port).code == 250
        assert_starttls_with_the_self_signed_pair(env, smtp_port, text)
        assert all(listening(port) for port in ports)
        assert_the_redis_password_kept_secret(env, output.read_text())
    finally:
        os.kill(up.pid, signal.SIGTERM)
        up.wait(90)
    assert up.returncode == 0
    assert "stopped." in output.read_text()
    time.sleep(1)
    assert not [port for port in ports if listening(port)], "a service outlived mailscan up"
    leftovers = subprocess.run(["pgrep", "-f", env["MAILSCAN_VAR_DIR"]], capture_output=True)
    assert leftovers.stdout == b"", "processes of the stack are still running"
