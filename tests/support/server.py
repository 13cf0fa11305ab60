"""specstore for real: ``python server.py`` and ``python -m specstore`` in subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from .net import free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
# Settings the tests' own environment must not leak into a server they start.
_CLEARED = (
    "DATABASE_URL",
    "AUTH_SERVER",
    "AUTH_PUBLIC_KEY",
    "HOOK_TOKEN",
    "DPP_URL",
    "DPP_PIPELINES_DIR",
    "PUBLIC_URL",
    "OUTPUT_DIR",
    "DATA_DIR",
    "STORAGE",
    "S3_BUCKET",
    "S3_PREFIX",
    "S3_ENDPOINT_URL",
    "INPUT_ADDRESS_ALLOW",
    "HOOK_SECRET",
)


def server_env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    # The tests' data servers are on loopback: allowed, as an operator would.
    env["INPUT_ADDRESS_ALLOW"] = "127.0.0.0/8"
    env.update(values)
    return env


class Server:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.log = cwd / f"server-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "server.py")],
                env=self.env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # Any answer will do: the baseline app of the benchmark has no /source/schema.
        wait_for_http(self.url + "/source/schema", alive=lambda: self.process.poll() is None)

    def cli(self, *args: str) -> str:
        """What ``specstore ARGS`` prints, in this server's environment (it must succeed)."""
        result = self.run_cli(*args)
        result.check_returncode()
        return result.stdout.strip()

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``specstore ARGS`` in this server's environment, however it ends."""
        return subprocess.run(
            [sys.executable, "-m", "specstore", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Gunicorn:
    """A WSGI app (specstore's by default) under gunicorn with the repository's
    gunicorn.conf.py (or that of another checkout at ``root``), in its own process group
    so a test can kill the whole server."""

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        workers: int = 4,
        app: str = "server:app",
        root: Path = ROOT,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.log = cwd / f"gunicorn-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    str(root / "gunicorn.conf.py"),
                    "--chdir",
                    str(root),
                    "--workers",
                    str(workers),
                    app,
                ],
                env=self.env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_http(self.url + "/source/schema", alive=lambda: self.process.poll() is None)

    def kill(self) -> None:
        """SIGKILL the master and every worker: no clean-up of any kind."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def post_spec(server, keypair, spec, owner="alice"):
    """``spec`` uploaded to a running ``server`` with ``owner``'s token: the response."""
    return requests.post(
        server.url + "/source/upload",
        json=spec,
        headers={"Auth-Token": keypair.token(owner)},
        timeout=30,
    )


def get_json(server, path):
    """The JSON a running ``server`` answers at ``path``."""
    response = requests.get(server.url + path, timeout=10)
    return response.json()
