"""A private PostgreSQL cluster for the message log's tests: Debian's server binaries, a
data folder of its own, loopback and a port of its own, stopped afterwards. As root it
runs as the ``postgres`` user (PostgreSQL refuses to run as root). Never the machine's own
cluster."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import psycopg


def server_bin() -> Path | None:
    found = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class Cluster:
    port: int
    folder: Path
    bin_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/messagelog"

    def _run(self, *args: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        data = str(self.folder / "data")
        self._run(str(self.bin_dir / "initdb"), "-D", data, "-A", "trust", "-U", "postgres")
        self.start()
        with psycopg.connect(self._admin_url(), autocommit=True) as connection:
            connection.execute("CREATE DATABASE messagelog")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"), "-o", options,
                  "-l", str(self.folder / "log"), "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"),
                  "-m", "fast", "-w", "stop")  # fmt: skip

    def _admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def started_cluster(port: int) -> Cluster:
    bin_dir = server_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL's server is not installed (scripts/bootstrap adds it)")
    cluster = Cluster(port, Path(tempfile.mkdtemp(prefix="mailscan-pg-")), bin_dir)
    cluster.init()
    return cluster


def removed(cluster: Cluster) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):  # stopped already
        cluster.stop()
    shutil.rmtree(cluster.folder, ignore_errors=True)
