"""DPP's server mode on one machine: Redis, celery beat, the management worker, pipeline
workers and the dashboard, started the way DPP's own image starts them, from DPP's
virtualenv. ``specstore dpp-serve`` (``make dpp-serve``) runs it for trying specstore
with DPP; the tests run the very same stack.

What DPP 2.2.11 needs, measured: every process runs in the pipelines folder with the
virtualenv's ``bin/`` first on PATH; only beat gets ``SCHEDULER=1``; the status store
is Redis on port 6379 of ``DPP_REDIS_HOST`` (no other port), the queue a full broker URL
in ``DPP_CELERY_BROKER``; celery 4 needs ``inspect.formatargspec`` on Python 3.11, which
``make dpp`` restores (``datapackage_pipelines_specstore.compat``); and ``dpp serve`` binds
0.0.0.0:5000, so the dashboard runs as a Flask app on the address given here.

As specstore runs it, Redis listens on a loopback address only and asks for a password
(made for each start unless given), which DPP's processes read from
``DPP_REDIS_PASSWORD`` (see ``datapackage_pipelines_specstore.compat``) and celery from
its broker URL; and the dashboard is DPP's own with the hook credentials taken out of
its answers (``datapackage_pipelines_specstore.dashboard``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REDIS_PORT = 6379  # DPP's status store uses no other


class StackError(RuntimeError):
    """A process of the stack did not start."""


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass
class DppStack:
    venv: Path
    root: Path
    workers: int = 2
    redis_host: str = "127.0.0.83"
    broker_db: int = 6
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 5050
    environment: dict[str, str] = field(default_factory=dict)
    start_redis: bool = True
    logs: Path | None = None
    redis_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _loopback(self.redis_host):
            raise StackError(
                f"{self.redis_host!r} is not a loopback address: DPP's Redis listens on this "
                "machine only"
            )

    @property
    def broker(self) -> str:
        return f"redis://:{self.redis_password}@{self.redis_host}:{REDIS_PORT}/{self.broker_db}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.dashboard_host}:{self.dashboard_port}/"

    @property
    def log_dir(self) -> Path:
        return self.logs or self.root.parent / "dpp-logs"

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("VIRTUAL_ENV")}
        env.update(self.environment)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["DPP_REDIS_HOST"] = self.redis_host
        env["DPP_REDIS_PASSWORD"] = self.redis_password
        env["DPP_CELERY_BROKER"] = self.broker
        env.pop("SCHEDULER", None)
        env.update(extra)
        return env

    def _start(
        self, name: str, command: list[str], stdin_text: str | None = None, **extra_env: str
    ) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 (DPP's own commands)
                command,
                cwd=self.root,
                env=self.env(**extra_env),
                stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if stdin_text is not None:
                assert process.stdin is not None
                process.stdin.write(stdin_text.encode())
                process.stdin.close()
            self._processes[name] = process

    def _celery(self, *arguments: str) -> list[str]:
        python = str(self.venv / "bin" / "python")
        # The broker (its URL holds Redis's password) from DPP_CELERY_BROKER, not argv.
        application = ["-A", "datapackage_pipelines.app", "-l", "INFO"]
        return [python, "-m", "celery", *application, *arguments]

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.start_redis:
            redis_dir = self.log_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            self._start(
                "redis",
                [
                    "redis-server",
                    "-",
                    "--bind",
                    self.redis_host,
                    "--port",
                    str(REDIS_PORT),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "yes",
                    "--dir",
                    str(redis_dir),
                ],
                # The password goes in on standard input, where no other user sees it.
                stdin_text=f"requirepass {self.redis_password}\n",
            )
            self._wait_for_redis()
        init = subprocess.run(  # noqa: S603
            [str(self.venv / "bin" / "dpp"), "init"],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if init.returncode != 0:
            raise StackError(f"dpp init failed: {init.stdout[-2000:]!r} {init.stderr[-2000:]!r}")
        schedule = str(self.log_dir / "celerybeat-schedule")
        self._start("beat", self._celery("beat", "--schedule", schedule), SCHEDULER="1")
        self._start(
            "management",
            self._celery(
                "worker",
                "-Q",
                "datapackage-pipelines-management",
                "--concurrency=1",
                "-n",
                f"management-{os.getpid()}@%h",
            ),
        )
        for number in range(1, self.workers + 1):
            self._start(
                f"worker-{number}",
                self._celery(
                    "worker",
                    "-Q",
                    "datapackage-pipelines",
                    "--concurrency=1",
                    # One task at a time each, so that every worker takes its share.
                    "--prefetch-multiplier=1",
                    "-O",
                    "fair",
                    "-n",
                    f"pipelines-{number}-{os.getpid()}@%h",
                ),
            )
        self._start(
            "dashboard",
            [
                str(self.venv / "bin" / "flask"),
                "run",
                "--host",
                self.dashboard_host,
                "--port",
                str(self.dashboard_port),
            ],
            FLASK_APP="datapackage_pipelines_specstore.dashboard:app",
        )
        self._wait_for_dashboard()

    def _alive(self, name: str) -> None:
        process = self._processes[name]
        if process.poll() is not None:
            log = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
            raise StackError(f"DPP's {name} exited ({process.returncode}):\n{log}")

    def _wait_for_redis(self, seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._alive("redis")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.redis_host, REDIS_PORT), timeout=1) as connection,
            ):
                connection.sendall(f"AUTH {self.redis_password}\r\nPING\r\n".encode())
                answer = connection.recv(64)
                if answer == b"+OK\r\n":
                    answer += connection.recv(64)
                if answer.startswith(b"+OK\r\n+PONG"):
                    return
            time.sleep(0.1)
        raise StackError(f"Redis did not answer on {self.redis_host}:{REDIS_PORT}")

    def _wait_for_dashboard(self, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._alive("dashboard")
            with contextlib.suppress(requests.RequestException):
                requests.get(self.dashboard_url + "api/raw/none", timeout=2)
                return
            time.sleep(0.2)
        raise StackError(f"DPP's dashboard did not answer at {self.dashboard_url}")

    def log(self, name: str) -> str:
        """What one of the stack's processes has written so far."""
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def running(self) -> bool:
        return all(process.poll() is None for process in self._processes.values())

    def stop(self) -> None:
        for name in reversed(list(self._processes)):
            process = self._processes[name]
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self._processes.clear()
