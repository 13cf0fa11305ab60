"""specstore for real: ``python server.py`` and the ``specstore`` command in subprocesses,
talked to over HTTP on loopback, as the README's quick start does it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import make_spec
from tests.support.net import free_port, wait_for_http

ROOT = Path(__file__).resolve().parent.parent


def _env(**values: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "AUTH_SERVER", "AUTH_PUBLIC_KEY", "HOOK_TOKEN")
    }
    env.update(values)
    return env


class Server:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.log = cwd / "server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "server.py")],
                env=self.env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_http(self.url + "/source/schema", alive=lambda: self.process.poll() is None)

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "specstore", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout.strip()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    servers: list[Server] = []

    def start(**env: str) -> Server:
        server = Server(_env(**env), tmp_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_quick_start_on_the_embedded_defaults(start_server, tmp_path):
    """No AUTH_SERVER, no AUTH_PUBLIC_KEY, no HOOK_TOKEN: the service is usable alone."""
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/specstore.db", RUNNER_WORKERS="0")
    token = server.cli("token", "alice")

    response = requests.post(
        server.url + "/source/upload",
        json=make_spec(),
        headers={"Auth-Token": token},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["flow_id"] == "alice/gdp/1"

    hook_token = server.cli("hook-token")
    event = requests.post(
        f"{server.url}/source/update?token={hook_token}",
        json={"pipeline_id": "./alice/gdp", "event": "start"},
        timeout=10,
    )
    assert event.status_code == 200, event.text
    status = requests.get(server.url + "/source/alice/gdp/status", timeout=10)
    assert status.json()["state"] == "RUNNING"

    forged = requests.post(
        server.url + "/source/upload",
        json=make_spec(),
        headers={"Auth-Token": token + "x"},
        timeout=10,
    )
    assert forged.status_code == 401
    assert forged.json()["success"] is False

    server.stop()
    log = server.log.read_text()
    assert hook_token not in log  # the access log redacts ?token=
    assert "token=***" in log


def test_concurrent_uploads_over_http(start_server, database_url, keypair):
    server = start_server(
        DATABASE_URL=database_url, AUTH_PUBLIC_KEY=keypair.public_pem, RUNNER_WORKERS="0"
    )
    token = keypair.token("alice")
    count = 30
    barrier = threading.Barrier(count)

    def one_upload(index: int) -> requests.Response:
        barrier.wait()
        return requests.post(
            server.url + "/source/upload",
            json=make_spec(dataset=f"race-{index % 2}"),
            headers={"Auth-Token": token},
            timeout=60,
        )

    try:
        with ThreadPoolExecutor(count) as pool:
            responses = list(pool.map(one_upload, range(count)))
        assert [response.status_code for response in responses] == [200] * count
        for dataset in ("race-0", "race-1"):
            numbers = sorted(
                r.json()["revision"] for r in responses if r.json()["id"] == f"alice/{dataset}"
            )
            assert numbers == list(range(1, count // 2 + 1))
            latest = requests.get(f"{server.url}/source/alice/{dataset}/latest", timeout=10)
            assert latest.json()["revision"] == count // 2
    finally:
        from specstore.db import Database
        from tests.conftest import empty_tables

        database = Database(database_url)
        empty_tables(database)
        database.dispose()
