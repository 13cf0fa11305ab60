"""A real npm registry for the tests: verdaccio, installed from the npm registry by
``make npm-tools`` (npm-tools/package-lock.json pins it), serving on a loopback port
with its storage in a temporary folder and no uplink (it never reaches the internet).

Anything that keeps it from starting is an error, never a skip.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import requests

from .net import free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[2]


class RegistryUnavailable(RuntimeError):
    pass


def verdaccio_bin() -> Path:
    tools = Path(os.environ.get("SPECSTORE_NPM_TOOLS") or ROOT / "npm-tools")
    binary = tools / "node_modules" / ".bin" / "verdaccio"
    if not binary.exists():
        raise RegistryUnavailable(f"no verdaccio in {tools}: run `make npm-tools`")
    return binary


class Verdaccio:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = verdaccio_bin()
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yaml"
        # JSON is YAML: verdaccio reads this as its config file.
        config.write_text(
            json.dumps(
                {
                    "storage": str(self.root / "storage"),
                    "auth": {"htpasswd": {"file": str(self.root / "htpasswd"), "max_users": 100}},
                    "uplinks": {},
                    "packages": {
                        "**": {
                            "access": "$all",
                            "publish": "$authenticated",
                            "unpublish": "$authenticated",
                        }
                    },
                    "web": {"enable": False},
                    "log": {"type": "stdout", "format": "pretty", "level": "warn"},
                }
            )
        )
        self._log = (self.root / "verdaccio.log").open("wb")
        self._process = subprocess.Popen(
            [str(binary), "--config", str(config), "--listen", f"127.0.0.1:{self.port}"],
            cwd=self.root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        process = self._process
        try:
            wait_for_http(self.url + "-/ping", alive=lambda: process.poll() is None)
        except Exception as exc:
            log = (self.root / "verdaccio.log").read_text(errors="replace")[-2000:]
            raise RegistryUnavailable(f"verdaccio did not start: {exc}\n{log}") from exc

    def add_user(self, name: str) -> str:
        """Create a user the way ``npm adduser`` does; its token for publishing."""
        response = requests.put(
            f"{self.url}-/user/org.couchdb.user:{name}",
            json={"name": name, "password": secrets.token_hex(12), "type": "user", "roles": []},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["token"]

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=15)
        if self._process is not None:
            self._log.close()
