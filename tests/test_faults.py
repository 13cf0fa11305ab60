"""Load and faults against real processes: gunicorn with four workers, SIGKILL in the
middle of a burst, a pipeline process killed, the database locked; on PostgreSQL and
SQLite."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from specstore.db import Database
from specstore.models import Dataset, Revision
from tests.conftest import HOOK_SECRET, empty_tables, upload
from tests.support.pipelines import (
    carrying_its_package,
    example_spec,
    pipelines_for_dpp,
    wait_for,
)
from tests.support.processes import children
from tests.support.server import Gunicorn, server_env

UPLOADS = 50
DATASETS = 5


@pytest.fixture
def gunicorn(tmp_path, database_url):
    servers: list[Gunicorn] = []

    def start(**env: str) -> Gunicorn:
        server = Gunicorn(server_env(DATABASE_URL=database_url, **env), tmp_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    database = Database(database_url)
    empty_tables(database)
    database.dispose()


def _post(url: str, spec: dict, token: str) -> requests.Response:
    return requests.post(
        url + "/source/upload", json=spec, headers={"Auth-Token": token}, timeout=60
    )


def _states(database_url: str) -> dict[int, str]:
    """Each revision number's state, the same for every dataset (else a failure)."""
    database = Database(database_url)
    try:
        with database.transaction() as session:
            rows = session.execute(select(Revision.revision, Revision.state)).all()
    finally:
        database.dispose()
    states: dict[int, set[str]] = defaultdict(set)
    for number, state in rows:
        states[number].add(state)
    assert all(len(found) == 1 for found in states.values()), states
    return {number: found.pop() for number, found in states.items()}


def _stored(database_url: str) -> dict[str, list[int]]:
    database = Database(database_url)
    try:
        with database.transaction() as session:
            rows = session.execute(
                select(Dataset.name, Revision.revision, Dataset.last_revision)
                .join(Revision, Revision.dataset_id == Dataset.id)
                .order_by(Dataset.name, Revision.revision)
            ).all()
    finally:
        database.dispose()
    found: dict[str, list[int]] = defaultdict(list)
    for name, number, last in rows:
        found[name].append(number)
        assert last >= number
    return dict(found)


def test_50_concurrent_uploads_through_4_gunicorn_workers(
    gunicorn, keypair, example_data, database_url, tmp_path
):
    dpp_root = tmp_path / "dpp"
    server = gunicorn(
        AUTH_PUBLIC_KEY=keypair.public_pem,
        HOOK_SECRET=HOOK_SECRET,
        DPP_PIPELINES_DIR=str(dpp_root),
        PUBLIC_URL="http://specstore.test/",
    )
    token = keypair.token("alice")
    barrier = threading.Barrier(UPLOADS)

    def one(index: int) -> requests.Response:
        spec = carrying_its_package(example_data, dataset=f"load-{index % DATASETS}")
        barrier.wait()
        return _post(server.url, spec, token)

    started = time.monotonic()
    with ThreadPoolExecutor(UPLOADS) as pool:
        responses = list(pool.map(one, range(UPLOADS)))
    elapsed = time.monotonic() - started

    assert [response.status_code for response in responses] == [200] * UPLOADS
    per_dataset = UPLOADS // DATASETS
    by_dataset: dict[str, list[int]] = defaultdict(list)
    for response in responses:
        body = response.json()
        by_dataset[body["id"]].append(body["revision"])
    assert {name: sorted(numbers) for name, numbers in by_dataset.items()} == {
        f"alice/load-{index}": list(range(1, per_dataset + 1)) for index in range(DATASETS)
    }
    assert _stored(database_url) == {
        f"load-{index}": list(range(1, per_dataset + 1)) for index in range(DATASETS)
    }
    written = pipelines_for_dpp(dpp_root)
    assert sorted(written) == [f"load-{index}" for index in range(DATASETS)]
    assert {details["specstore-revision"] for details in written.values()} == {per_dataset}
    # The newest revision of each waits for DPP; the older ones never run.
    assert _states(database_url) == {
        number: ("REGISTERED" if number == per_dataset else "FAILED")
        for number in range(1, per_dataset + 1)
    }
    print(f"\n{UPLOADS} uploads through 4 workers in {elapsed:.2f}s")


def test_sigkill_in_the_middle_of_a_burst_loses_nothing_answered(
    gunicorn, keypair, example_data, database_url, tmp_path
):
    env = {
        "AUTH_PUBLIC_KEY": keypair.public_pem,
        "HOOK_SECRET": HOOK_SECRET,
        "OUTPUT_DIR": str(tmp_path / "output"),
        "RUNNER_WORKERS": "1",
    }
    server = gunicorn(**env)
    token = keypair.token("alice")
    answered: list[dict] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst(worker: int) -> None:
        for index in range(40):
            if stop.is_set():
                return
            spec = example_spec(example_data, dataset=f"burst-{(worker + index) % 3}")
            try:
                response = _post(server.url, spec, token)
            except requests.RequestException:
                return
            if response.status_code == 200:
                with lock:
                    answered.append(response.json())

    threads = [threading.Thread(target=burst, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(answered) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join()
    assert len(answered) >= 20

    stored = _stored(database_url)
    for body in answered:
        name = body["id"].split("/", 1)[1]
        assert body["revision"] in stored[name], body
    for name, numbers in stored.items():
        assert numbers == list(range(1, len(numbers) + 1)), (name, numbers)

    # After a restart every revision reaches a final state: nothing stays RUNNING.
    restarted = gunicorn(**env)
    for name in stored:
        status = wait_for(
            lambda name=name: requests.get(
                f"{restarted.url}/source/alice/{name}/status", timeout=10
            ).json(),
            timeout=120,
        )
        assert status["state"] == "SUCCEEDED", (name, status)
    database = Database(database_url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with database.transaction() as session:
                unfinished = session.scalars(
                    select(Revision.state).where(
                        Revision.state.in_(("LOADED", "REGISTERED", "RUNNING"))
                    )
                ).all()
            if not unfinished:
                break
            time.sleep(0.5)
        assert unfinished == []
    finally:
        database.dispose()


def _flowrunner_children() -> list[int]:
    """Pipeline processes started by this test process."""
    return [child.pid for child in children(os.getpid()) if "flowrunner" in child.command]


def test_a_pipeline_process_that_dies_ends_failed_with_the_reason(make_app, keypair, tmp_path):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Stall(BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(20)

        def log_message(self, *args):
            pass

    stall = ThreadingHTTPServer(("127.0.0.1", 0), Stall)
    stall.daemon_threads = True
    threading.Thread(target=stall.serve_forever, daemon=True).start()
    try:
        app = make_app(runner_workers=1)
        client = app.test_client()
        spec = example_spec(f"http://127.0.0.1:{stall.server_address[1]}/")
        spec["inputs"][0]["parameters"]["descriptor"] = {
            "resources": [{"name": "gdp", "path": "gdp.csv"}]
        }
        spec["processing"] = []
        upload(client, spec, keypair.token("alice"))
        deadline = time.monotonic() + 30
        while not (children := _flowrunner_children()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert children, "the pipeline process did not start"
        os.kill(children[0], signal.SIGKILL)
        status = wait_for(lambda: client.get("/source/alice/gdp/status").get_json(), timeout=30)
    finally:
        stall.shutdown()
        stall.server_close()
    assert status["state"] == "FAILED"
    error_log = client.get("/source/alice/gdp/info").get_json()["error_log"]
    assert error_log[0] == "the pipeline process ended with exit code -9"


def test_a_locked_sqlite_database_is_503_within_seconds_then_recovers(make_app, keypair, tmp_path):
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    Database(url).upgrade()
    app = make_app(database_url=url)
    client = app.test_client()
    assert (
        upload(client, example_spec("http://files.test/"), keypair.token("alice")).status_code
        == 200
    )

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        response = upload(client, example_spec("http://files.test/"), keypair.token("alice"))
        waited = time.monotonic() - started
        assert response.status_code == 503
        assert response.get_json()["errors"] == ["the database is unavailable, try again shortly"]
        assert waited < 15
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    response = upload(client, example_spec("http://files.test/"), keypair.token("alice"))
    assert response.status_code == 200
    assert response.get_json()["revision"] == 2
