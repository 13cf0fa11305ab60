"""specstore for real: ``python server.py`` and the ``specstore`` command in subprocesses,
talked to over HTTP on loopback, as the quick start and the tutorial do."""

from __future__ import annotations

import http.client
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from specstore.hooks import credential as credential_for
from tests.support.api import make_spec
from tests.support.pipelines import EXAMPLE_BASE_URL, EXAMPLES, sqlite_tables, wait_for


def test_quick_start_on_the_embedded_defaults(start_server, tmp_path):
    """No AUTH_SERVER, no AUTH_PUBLIC_KEY, no HOOK_SECRET: the service is usable alone."""
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/specstore.db", RUNNER_WORKERS="0")
    token = server.cli("token", "alice")
    # One Date header (the development server adds one; nothing may add another).
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/source/alice/gdp/status")
    answer = connection.getresponse()
    assert answer.status == 404 and len(answer.msg.get_all("Date")) == 1
    connection.close()

    response = requests.post(
        server.url + "/source/upload",
        json=make_spec(),
        headers={"Auth-Token": token},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["flow_id"] == "alice/gdp/1"

    hook_token = server.cli("hook-token", "alice/gdp", "1")
    event = requests.post(
        f"{server.url}/source/update?dataset=alice/gdp&revision=1&token={hook_token}",
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
        from specstore.store.database import Database
        from tests.support.api import empty_tables

        database = Database(database_url)
        empty_tables(database)
        database.dispose()


def test_the_readme_example_runs_to_succeeded_on_the_defaults(start_server, example_data, tmp_path):
    """The tutorial's walk-through: the example spec uploaded as YAML, run by the embedded
    runner, outputs on disk under ./output (the server's working folder here)."""
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/specstore.db")
    token = server.cli("token", "alice")
    spec = (EXAMPLES / "spec.yaml").read_text().replace(EXAMPLE_BASE_URL, example_data)

    response = requests.post(
        server.url + "/source/upload",
        data=spec.encode(),
        headers={"Auth-Token": token, "Content-Type": "application/yaml"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    status = wait_for(
        lambda: requests.get(server.url + "/source/alice/gdp/status", timeout=10).json()
    )
    assert status["state"] == "SUCCEEDED", status
    out = tmp_path / "output" / "alice" / "gdp"
    shown = sorted(path.name for path in out.iterdir() if not path.name.startswith("."))
    assert shown == ["datapackage", "gdp.sqlite", "gdp.zip"]
    assert sorted(sqlite_tables(out / "gdp.sqlite")) == ["gdp", "population"]


def test_two_servers_on_one_database_are_one_service(start_server, postgres_server, keypair):
    """Stateless instances behind a load balancer: uploads to either, the same reads from both."""
    url = postgres_server.create_database("two_instances")
    from specstore.store.database import Database

    Database(url).upgrade()
    env = {"DATABASE_URL": url, "RUNNER_WORKERS": "0", "HOOK_SECRET": "shared-hook-secret"}
    first = start_server(AUTH_PUBLIC_KEY=keypair.public_pem, **env)
    second = start_server(AUTH_PUBLIC_KEY=keypair.public_pem, **env)
    token = keypair.token("alice")
    numbers = []
    for index in range(6):
        server = (first, second)[index % 2]
        response = requests.post(
            server.url + "/source/upload",
            json=make_spec(),
            headers={"Auth-Token": token},
            timeout=10,
        )
        numbers.append(response.json()["revision"])
    assert numbers == [1, 2, 3, 4, 5, 6]
    credential = credential_for("shared-hook-secret", "alice", "gdp", 6)
    event = requests.post(
        f"{second.url}/source/update?dataset=alice/gdp&revision=6&token={credential}",
        json={"pipeline_id": "./alice/gdp", "event": "start"},
        timeout=10,
    )
    assert event.status_code == 200
    for server in (first, second):
        assert requests.get(server.url + "/source/alice/gdp/status", timeout=10).json()[
            "state"
        ] == ("RUNNING")
        latest = requests.get(server.url + "/source/alice/gdp/latest", timeout=10).json()
        assert latest["revision"] == 6
        assert requests.get(server.url + "/source/alice", timeout=10).json()["total"] == 1
