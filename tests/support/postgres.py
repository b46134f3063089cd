"""A throwaway PostgreSQL cluster on loopback for the store tests, when the server binaries exist.

initdb refuses to run as root, so as root the cluster is owned by the ``postgres`` system user
that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg


@dataclass
class Cluster:
    datadir: Path
    port: int
    pg_ctl: str
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        self.pause()
        shutil.rmtree(self.datadir.parent, ignore_errors=True)

    def pause(self) -> None:
        """Stop the server but keep its data, as an outage would."""
        _run(self.user, [self.pg_ctl, "-D", str(self.datadir), "-m", "immediate", "-w", "stop"], check=False)

    def resume(self) -> None:
        root = self.datadir.parent
        options = f"-h 127.0.0.1 -p {self.port} -k {root} -c fsync=off -c full_page_writes=off"
        _run(self.user, [self.pg_ctl, "-D", str(self.datadir), "-o", options, "-l", str(root / "log"), "-w", "start"])


def _bindir() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    return Path(os.path.realpath(found)).parent if found else None


def _run(user: str | None, args: list[str], check: bool = True) -> None:
    command = ["runuser", "-u", user, "--", *args] if user else args
    subprocess.run(command, check=check, capture_output=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cluster() -> Cluster | None:
    """Start a cluster, or return None when PostgreSQL is not installed here."""
    bindir = _bindir()
    if bindir is None:
        return None
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="slipstream-pg-"))
    datadir = root / "data"
    if user:
        shutil.chown(root, user)
    _run(user, [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync"])
    cluster = Cluster(datadir, _free_port(), str(bindir / "pg_ctl"), user)
    cluster.resume()
    return cluster


@asynccontextmanager
async def fresh_database_url(server_url: str, prefix: str = "slip_test") -> AsyncIterator[str]:
    """A new, empty database on the server for one test, dropped afterwards even if the server restarted."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    await _execute(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await _execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _execute(server_url: str, statement: str) -> None:
    conn = await asyncpg.connect(server_url)  # a new connection each time: the server may have restarted
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
