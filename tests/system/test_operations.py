"""``specstore status`` against a running server."""

from __future__ import annotations

import json
import subprocess
import sys

import requests

from tests.support.api import make_spec
from tests.support.net import free_port


def test_status_command_asks_a_running_server(start_server, tmp_path):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/s.db", RUNNER_WORKERS="0")
    token = server.cli("token", "alice")
    requests.post(
        server.url + "/source/upload", json=make_spec(), headers={"Auth-Token": token}, timeout=10
    ).raise_for_status()
    command = [sys.executable, "-m", "specstore", "status", "alice/gdp", "--url", server.url]
    found = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["state"] == "LOADED"

    command[4] = "alice/nothing"
    missing = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["success"] is False

    command[5:] = ["--url", f"http://127.0.0.1:{free_port()}"]
    down = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert down.returncode == 1
    assert "cannot be reached" in down.stderr
