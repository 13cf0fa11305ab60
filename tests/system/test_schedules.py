"""A schedule fires once per due time with two servers, and its revision is taken up by the
embedded runner (the DPP side is in tests/system/test_dpp_server.py; its sources unchanged,
it ends without a run: tests/system/test_unchanged.py)."""

from __future__ import annotations

import time

import pytest
import requests

from tests.support.pipelines import carrying_its_package, wait_for


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_scheduled_revision_runs_on_the_embedded_runner_once_with_two_servers(
    start_server, database_url, keypair, example_data, tmp_path
):
    env = {
        "DATABASE_URL": database_url,
        "AUTH_PUBLIC_KEY": keypair.public_pem,
        "OUTPUT_DIR": str(tmp_path / "output"),
        "SCHEDULE_MIN_INTERVAL": "60",
    }
    servers = [start_server(**env), start_server(**env)]
    spec = carrying_its_package(example_data, dataset="scheduled")
    spec["schedule"] = "every 1m"
    response = requests.post(
        servers[0].url + "/source/upload",
        json=spec,
        headers={"Auth-Token": keypair.token("alice")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    uploaded = time.monotonic()
    second = wait_for(
        lambda: requests.get(servers[1].url + "/source/alice/scheduled/2", timeout=10).json(),
        timeout=150,
    )
    assert second["trigger"] == "scheduled" and second["state"] == "SUCCEEDED", second
    assert second["spec_contents"] == spec
    assert time.monotonic() - uploaded >= 55
    status = requests.get(servers[0].url + "/source/alice/scheduled/status", timeout=10).json()
    assert status["trigger"] == "scheduled"
    # No double: one revision for the one due time (the next is a minute away).
    latest = requests.get(servers[0].url + "/source/alice/scheduled/latest", timeout=10).json()
    assert latest["revision"] == 2
