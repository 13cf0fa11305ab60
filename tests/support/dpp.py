"""A real datapackage-pipelines deployment for the tests: DPP 2.2.11 from its own
virtualenv (``make dpp`` builds .venv-dpp; SPECSTORE_DPP_VENV points elsewhere),
its working folder, ``dpp run``, and its dashboard served on loopback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.api import HOOK_SECRET

from .net import free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[2]


class DppUnavailable(RuntimeError):
    pass


def dpp_venv() -> Path:
    venv = Path(os.environ.get("SPECSTORE_DPP_VENV") or ROOT / ".venv-dpp")
    if not (venv / "bin" / "dpp").exists():
        raise DppUnavailable(f"no DPP in {venv}: run `make dpp` (or set SPECSTORE_DPP_VENV)")
    return venv


class DppDeployment:
    def __init__(self, root: Path, venv: Path) -> None:
        self.root = root
        self.venv = venv
        root.mkdir(parents=True, exist_ok=True)
        self.dashboard_port = free_port()
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}/"
        self._dashboard: subprocess.Popen[bytes] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("VIRTUAL_ENV")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def run(self, pipeline_id: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``dpp run ./<pipeline_id>`` from the DPP root, as an operator would."""
        return subprocess.run(
            [str(self.venv / "bin" / "dpp"), "run", f"./{pipeline_id}"],
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def start_dashboard(self) -> None:
        self._log = (self.root.parent / "dashboard.log").open("wb")
        self._dashboard = subprocess.Popen(
            [
                str(self.venv / "bin" / "flask"),
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.dashboard_port),
            ],
            cwd=self.root,
            # DPP's dashboard as specstore runs it: hook credentials taken out.
            env=self.env(FLASK_APP="datapackage_pipelines_specstore.dashboard:app"),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        dashboard = self._dashboard
        wait_for_http(self.dashboard_url + "api/raw/none", alive=lambda: dashboard.poll() is None)

    def stop(self) -> None:
        if self._dashboard is not None:
            self._dashboard.terminate()
            self._dashboard.wait(timeout=10)
            self._log.close()


def specstore_for(dpp, start_server, keypair, output, **env):
    """``python server.py`` handing pipelines to ``dpp``, its outputs in ``output``; its
    registry a SQLite file beside them unless ``env`` names a DATABASE_URL."""
    settings = {
        "DATABASE_URL": f"sqlite:///{output.parent}/dpp-registry.db",
        "AUTH_PUBLIC_KEY": keypair.public_pem,
        "HOOK_SECRET": HOOK_SECRET,
        "DPP_PIPELINES_DIR": str(dpp.root),
        "OUTPUT_DIR": str(output),
        "DATA_DIR": str(output.parent / "data"),
    }
    return start_server(**{**settings, **env})


def dpp_ids(dpp) -> list[str]:
    """The pipeline ids ``dpp`` lists in its folder."""
    listed = subprocess.run(
        [str(dpp.venv / "bin" / "dpp")],
        cwd=dpp.root,
        env=dpp.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [line.split()[1] for line in listed.splitlines() if line.startswith("- ./")]
