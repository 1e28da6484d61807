"""A private Postfix for the tests: its own config folder, queue and log, listening on a
loopback port, relaying everything to one next hop. Started with ``postfix -c FOLDER start``
and stopped with ``postfix -c FOLDER stop``: the machine's own Postfix (its /etc/postfix)
is never read, started or changed.

Postfix runs its daemons as the ``postfix`` user, so the folder is one of its own under the
system's temporary folder (traversable by that user), not inside the suite's private folder.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
HOSTNAME = "postfix.example.test"
# The tests' mail client connects from this loopback address and greets with this name, so
# that a header naming it is told apart from one naming Postfix (127.0.0.1).
CLIENT_ADDRESS = "127.0.0.5"
CLIENT_HELO = "client.example.test"

# Only the services this Postfix needs; chroot off ("n" in the fifth column) so that the
# daemons find the private folder's paths as they are.
BASE_SERVICES = """\
pickup    unix  n  -  n  60  1  pickup
cleanup   unix  n  -  n  -  0  cleanup
qmgr      unix  n  -  n  300  1  qmgr
rewrite   unix  -  -  n  -  -  trivial-rewrite
bounce    unix  -  -  n  -  0  bounce
defer     unix  -  -  n  -  0  bounce
trace     unix  -  -  n  -  0  bounce
verify    unix  -  -  n  -  1  verify
flush     unix  n  -  n  1000?  0  flush
proxymap  unix  -  -  n  -  -  proxymap
smtp      unix  -  -  n  -  -  smtp
relay     unix  -  -  n  -  -  smtp
showq     unix  n  -  n  -  -  showq
error     unix  -  -  n  -  -  error
retry     unix  -  -  n  -  -  error
discard   unix  -  -  n  -  -  discard
anvil     unix  -  -  n  -  1  anvil
scache    unix  -  -  n  -  1  scache
postlog   unix-dgram  n  -  n  -  1  postlogd
"""


@dataclass
class PostfixInstance:
    """One private Postfix. ``port``: its smtpd for clients, on 127.0.0.1. ``next_hop``:
    where it relays all mail, ``[127.0.0.1]:PORT``. ``main``: further main.cf lines (they
    come last, so they win). ``services``: further master.cf entries, as written there."""

    port: int
    next_hop: str
    main: dict[str, str] = field(default_factory=dict)
    services: str = ""
    smtpd_options: tuple[str, ...] = ()
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mailscan-postfix-"))
        self.root.chmod(0o755)  # the postfix user reaches its queue and data through it

    @property
    def config_dir(self) -> Path:
        """main.cf and master.cf; apart from the queue, which Postfix's check wants owned
        by root all the way down."""
        return self.root / "etc"

    @property
    def maillog_path(self) -> Path:
        return self.root / "maillog"

    def main_cf(self) -> dict[str, str]:
        return {
            "compatibility_level": "3.6",
            "queue_directory": str(self.root / "queue"),
            "data_directory": str(self.root / "data"),
            "maillog_file": str(self.maillog_path),
            "maillog_file_prefixes": str(self.root),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": HOSTNAME,
            "mydomain": "example.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": self.next_hop,
            "local_transport": "error:local delivery is disabled",
            "alias_maps": "",
            "alias_database": "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_peername_lookup": "no",  # no DNS: the client name is "unknown"
            "smtp_host_lookup": "native",
            "biff": "no",
            # Deferred mail is tried again within seconds once flushed or due.
            "queue_run_delay": "2s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            **self.main,
        }

    def master_cf(self) -> str:
        options = "".join(f"\n  -o {option}" for option in self.smtpd_options)
        smtpd = f"127.0.0.1:{self.port}  inet  n  -  n  -  -  smtpd{options}\n"
        return smtpd + BASE_SERVICES + self.services

    def start(self, timeout_s: float = 30.0) -> None:
        lines = "".join(f"{name} = {value}\n" for name, value in self.main_cf().items())
        self.config_dir.mkdir(mode=0o755, exist_ok=True)
        (self.root / "queue").mkdir(mode=0o755, exist_ok=True)
        (self.config_dir / "main.cf").write_text(lines)
        (self.config_dir / "master.cf").write_text(self.master_cf())
        self.postfix("check")  # makes the queue's folders, owned as Postfix wants them
        self.postfix("start")
        self._await_smtpd(timeout_s)

    def stop(self) -> None:
        self.postfix("stop", check=False)
        self._await_master_gone(10.0)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), *args],
            capture_output=True, text=True, timeout=60, check=check,
        )  # fmt: skip

    def queue(self) -> list[dict]:
        """``postqueue -j``: one record per queued message (its queue name, recipients
        with the delay reason, ...)."""
        listed = subprocess.run(
            [POSTQUEUE, "-c", str(self.config_dir), "-j"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]

    def flush(self) -> None:
        """``postqueue -f``: try every deferred message now."""
        subprocess.run([POSTQUEUE, "-c", str(self.config_dir), "-f"], timeout=30, check=True)

    def maillog(self) -> str:
        try:
            return self.maillog_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _await_smtpd(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    if sock.makefile("rb").readline().startswith(b"220"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"Postfix in {self.root} did not answer on port {self.port}:\n"
                             f"{self.maillog()[-2000:]}")  # fmt: skip

    def _await_master_gone(self, timeout_s: float) -> None:
        pid_file = self.root / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _running(pid_file):
            time.sleep(0.1)


@contextmanager
def running(instance: PostfixInstance) -> Iterator[PostfixInstance]:
    """Started for the block, then stopped and its folder removed (kept when the start
    failed is not needed: the error carries its log)."""
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        instance.remove()


@dataclass
class ClientReply:
    """What Postfix's client saw: the reply to DATA, or to the command refused before."""

    code: int
    text: str


def send_via(
    port: int,
    message: EmailMessage | bytes,
    rcpts: tuple[str, ...] = ("bob@example.test",),
    sender: str = "alice@example.test",
) -> ClientReply:
    """One message over SMTP from CLIENT_ADDRESS, greeting as CLIENT_HELO."""
    raw = message if isinstance(message, bytes) else message.as_bytes()
    with smtplib.SMTP("127.0.0.1", port, timeout=180, source_address=(CLIENT_ADDRESS, 0)) as client:
        client.ehlo(CLIENT_HELO)
        try:
            client.mail(sender)
            for rcpt in rcpts:
                code, text = client.rcpt(rcpt)
                if code >= 400:
                    return ClientReply(code, text.decode(errors="replace"))
            code, text = client.data(raw)
        except smtplib.SMTPResponseException as err:
            return ClientReply(err.smtp_code, err.smtp_error.decode(errors="replace"))
    return ClientReply(code, text.decode(errors="replace"))


def _running(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return False
    return Path(f"/proc/{pid}").exists()
