"""A throwaway PostgreSQL cluster for the tests: Debian's initdb/pg_ctl in a temporary folder, stopped at the end.

PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` system user
(created by Debian's package) and its commands run through `runuser`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl (Debian keeps them out of PATH), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its URL (trust auth on 127.0.0.1) and how to make a fresh database in it."""

    port: int
    bindir: Path
    run_as: list[str]

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://digest@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def running_cluster(fsync: bool = False) -> Iterator[Cluster]:
    """Start a cluster in a new temporary folder; stop it and remove the folder afterwards. `fsync`: durable
    commits as a real server makes them (benchmarks); the tests go without."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL's initdb was not found; install Debian's 'postgresql' package")
    root = Path(tempfile.mkdtemp(prefix="digest-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    port = _free_port()

    def run(*args: str) -> None:
        subprocess.run([*run_as, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "digest", "-A", "trust", "-E", "UTF8", "--no-sync")
    durability = "" if fsync else " -c fsync=off"
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}{durability} -c max_connections=50"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    try:
        yield Cluster(port=port, bindir=bindir, run_as=run_as)
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
