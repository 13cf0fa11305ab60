"""A real, throw-away PostgreSQL server for the test suite.

It is initialised in a temporary directory and listens on a free loopback
port. PostgreSQL refuses to run as root, so when the tests run as root the
server runs as the ``postgres`` user. Anything that stops it from starting is
an error, never a skip: the PostgreSQL tests must run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .net import free_port

DEFAULT_PG_BIN = "/usr/lib/postgresql/15/bin"


class PostgresUnavailable(RuntimeError):
    pass


class PostgresServer:
    def __init__(self, pg_bin: str | None = None) -> None:
        self.bin = Path(pg_bin or os.environ.get("PG_BIN") or DEFAULT_PG_BIN)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="specstore-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start(self) -> None:
        if not (self.bin / "initdb").exists():
            raise PostgresUnavailable(
                f"no PostgreSQL binaries in {self.bin} (install postgresql, or set PG_BIN)"
            )
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        try:
            self._run(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "start",
            )
        except PostgresUnavailable as exc:
            log = self.log.read_text() if self.log.exists() else ""
            raise PostgresUnavailable(f"{exc}\n{log}") from exc

    def url(self, database: str = "postgres") -> str:
        """As PostgreSQL hosts hand URLs out: no driver named (each user picks its own)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run(
            str(self.bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            name,
        )
        return self.url(name)

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "start",
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
        )

    def destroy(self) -> None:
        with contextlib.suppress(PostgresUnavailable):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
