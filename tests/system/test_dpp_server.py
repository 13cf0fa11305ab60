"""specstore with DPP as its operators run it: server mode, never ``dpp run``.

One stack for the whole module (DPP 2.2.11's beat only looks for new pipelines at each
whole minute, so every test here waits for a tick): Debian's Redis on 127.0.0.83:6379,
celery beat, the management worker, two pipeline workers and the dashboard, started by
``DppStack`` as ``specstore dpp-serve`` starts them; specstore as ``python server.py`` on a
real PostgreSQL, in DPP mode.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from datapackage_pipelines_specstore.steps import PLANS_DIR
from sqlalchemy import select, update

from specstore.pipelines.dpp import DATASET_FILE
from specstore.pipelines.dpp.dispatcher import machine_booted
from specstore.pipelines.dpp.stack import REDIS_PORT, DppStack, StackError
from specstore.store.database import Database
from specstore.store.models import Dataset, Revision
from tests.support.api import HOOK_SECRET
from tests.support.dpp import DppUnavailable, dpp_venv
from tests.support.net import SlowData, free_port
from tests.support.pipelines import carrying_its_package, wait_for
from tests.support.server import Server, server_env

# A beat tick, a run, and room: what one wait for DPP may take.
TICK_WAIT = 150


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DppStack]:
    try:
        venv = dpp_venv()
    except DppUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    root = tmp_path_factory.mktemp("dpp-server")
    running = DppStack(venv, root / "pipelines", workers=2, dashboard_port=free_port())
    try:
        running.start()
    except StackError as exc:
        running.stop()
        pytest.fail(str(exc), pytrace=False)
    yield running
    running.stop()


class Specstore:
    """``python server.py`` in DPP mode; stopped and started again as a test needs."""

    def __init__(self, stack: DppStack, database_url: str, keypair: Any, root: Path) -> None:
        self.root = root
        self.keypair = keypair
        self.env = server_env(
            DATABASE_URL=database_url,
            AUTH_PUBLIC_KEY=keypair.public_pem,
            HOOK_SECRET=HOOK_SECRET,
            DPP_PIPELINES_DIR=str(stack.root),
            DPP_URL=stack.dashboard_url,
            OUTPUT_DIR=str(root / "output"),
            DPP_RECONCILE_AFTER="10",
            SCHEDULE_MIN_INTERVAL="60",
            UPLOAD_RATE_LIMIT="off",
        )
        self.servers: list[Server] = [Server(self.env, root)]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def another(self) -> Server:
        """One more server process on the same database."""
        server = Server(self.env, self.root)
        self.servers.append(server)
        return server

    def restart(self) -> None:
        self.stop()
        self.servers = [Server(self.env, self.root)]

    def upload(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(
            self.url + "/source/upload",
            json=spec,
            headers={"Auth-Token": self.keypair.token("alice")},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str) -> dict[str, Any]:
        return requests.get(self.url + path, timeout=30).json()

    def finish(self, dataset: str, revision: int | str = "latest", timeout: float = TICK_WAIT):
        return wait_for(lambda: self.get(f"/source/alice/{dataset}/{revision}"), timeout=timeout)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def specstore(stack, postgres_server, keypair, tmp_path_factory) -> Iterator[Specstore]:
    database_url = postgres_server.create_database("dpp_server_registry")
    running = Specstore(stack, database_url, keypair, tmp_path_factory.mktemp("specstore"))
    yield running
    running.stop()


def test_an_upload_runs_by_itself_and_so_do_the_same_steps_again(specstore, stack, example_data):
    """No one calls ``dpp run``: beat picks the pipeline up. The same spec again is a new
    revision whose pipeline DPP sees as changed (each revision changes what it hashes)."""
    specstore.upload(carrying_its_package(example_data, dataset="by-itself"))
    first = specstore.finish("by-itself", 1)
    assert first["state"] == "SUCCEEDED", first
    info = specstore.get("/source/alice/by-itself/info")
    # DPP picked it up itself: at its start-up (init) or at a minute's tick (update).
    assert info["trigger"] == "dirty-task"
    assert info["dpp_trigger"] in ("dirty-task-init", "dirty-task-update")
    assert (specstore.root / "output" / "alice" / "by-itself" / "by-itself.sqlite").exists()

    # DPP's workers published it, read back from specstore's /data/.
    descriptor = requests.get(first["datapackage_url"], timeout=30).json()
    assert descriptor["datahub"]["flowid"] == "alice/by-itself/1"
    for output in first["outputs"]:
        answer = requests.get(output["url"], timeout=30)
        assert answer.status_code == 200 and len(answer.content) == output["bytes"]

    specstore.upload(carrying_its_package(example_data, dataset="by-itself"))
    second = specstore.finish("by-itself", 2)
    assert second["state"] == "SUCCEEDED", second
    again = specstore.get("/source/alice/by-itself/info")
    assert again["revision"] == 2 and again["cache_hash"] != info["cache_hash"]
    # Unchanged data: the same objects, only a new descriptor.
    assert second["outputs"] == first["outputs"]
    assert second["datapackage_url"].endswith("/alice/by-itself/2/datapackage.json")

    # The embedded runner publishes the very same objects from the same spec.
    root = specstore.root / "embedded"
    root.mkdir()
    embedded = Server(
        server_env(
            DATABASE_URL=f"sqlite:///{root}/registry.db",
            AUTH_PUBLIC_KEY=specstore.keypair.public_pem,
            HOOK_SECRET=HOOK_SECRET,
            OUTPUT_DIR=str(root / "output"),
            DATA_DIR=str(root / "data"),
            RUNNER_WORKERS="1",
        ),
        root,
    )
    try:
        requests.post(
            embedded.url + "/source/upload",
            json=carrying_its_package(example_data, dataset="by-itself"),
            headers={"Auth-Token": specstore.keypair.token("alice")},
            timeout=30,
        ).raise_for_status()
        on_embedded = wait_for(
            lambda: requests.get(embedded.url + "/source/alice/by-itself/1", timeout=30).json()
        )
    finally:
        embedded.stop()
    assert on_embedded["state"] == "SUCCEEDED", on_embedded
    assert [(o["name"], o["type"], o["hash"]) for o in on_embedded["outputs"]] == [
        (o["name"], o["type"], o["hash"]) for o in first["outputs"]
    ]


def test_of_two_uploads_in_one_minute_the_older_is_superseded(specstore, example_data):
    specstore.upload(carrying_its_package(example_data, dataset="twice"))
    specstore.upload(carrying_its_package(example_data, dataset="twice"))
    newer = specstore.finish("twice", 2)
    assert newer["state"] == "SUCCEEDED", newer
    older = specstore.get("/source/alice/twice/1")
    assert older["state"] == "FAILED"
    assert older["errors"] == ["superseded by revision 2 before it ran"]


def test_two_pipeline_workers_share_a_burst(specstore, stack, example_data):
    """DPP queues four new pipelines a minute; two workers take one each at a time."""
    names = [f"burst-{number}" for number in range(4)]
    for name in names:
        specstore.upload(carrying_its_package(example_data, dataset=name))
    for name in names:
        assert specstore.finish(name, 1)["state"] == "SUCCEEDED", name
    ran = {
        worker: len(re.findall(r"execute_pipeline_task\[[^\]]+\] succeeded", stack.log(worker)))
        for worker in ("worker-1", "worker-2")
    }
    assert all(count > 0 for count in ran.values()), ran


def test_a_hook_lost_while_specstore_was_down_is_made_up_by_reconciliation(
    specstore, stack, keypair
):
    """specstore stops while its pipeline runs: DPP's finish hook finds nobody. Started
    again, specstore asks DPP's dashboard and takes the revision to what DPP recorded."""
    slow = SlowData(rows=150)  # fifteen seconds of reading
    try:
        spec = carrying_its_package(slow.url, dataset="lost-hook")
        spec["inputs"][0]["parameters"] = {
            "descriptor": {"name": "lost", "resources": [{"name": "rows", "path": "lost.csv"}]}
        }
        spec["processing"] = []
        spec["outputs"] = [{"kind": "sqlite"}]
        specstore.upload(spec)
        running = wait_for(
            lambda: specstore.get("/source/alice/lost-hook/1"),
            states=("RUNNING", "SUCCEEDED", "FAILED"),
            timeout=TICK_WAIT,
        )
        assert running["state"] == "RUNNING", running
        specstore.stop()
        on_dpp = wait_for(
            lambda: requests.get(
                stack.dashboard_url + "api/raw/alice/lost-hook", timeout=10
            ).json(),
            timeout=120,
        )
        assert on_dpp["state"] == "SUCCEEDED", on_dpp
        specstore.restart()
        status = specstore.finish("lost-hook", 1, timeout=120)
    finally:
        slow.close()
    assert status["state"] == "SUCCEEDED", status
    assert status["stats"]["count_of_rows"] == 150
    assert any("rows" in line for line in specstore.get("/source/alice/lost-hook/status")["logs"])


def test_a_pipeline_a_crash_of_the_machine_lost_is_written_again_and_runs(
    specstore, stack, example_data
):
    """The machine goes down just after an upload: neither its pipeline file nor its
    plan's metadata file reached the disk (uploads do not wait for them). The machine
    boots again (here: the revision's last change is moved to before this machine's
    boot), specstore starts again, finds the revision waiting for DPP without them,
    writes them again, and DPP runs it by itself."""
    now = time.time()
    if now % 60 > 45:
        # The beat must not find the file in the moment it exists.
        time.sleep(65 - now % 60)
    specstore.upload(carrying_its_package(example_data, dataset="crashed"))
    (stack.root / "alice" / "crashed" / DATASET_FILE).unlink()
    (specstore.root / "output" / "alice" / "crashed" / PLANS_DIR / "1.json").unlink()
    specstore.stop()
    database = Database(specstore.env["DATABASE_URL"])
    try:
        with database.transaction(write=True) as session:
            crashed = select(Dataset.id).where(Dataset.name == "crashed").scalar_subquery()
            session.execute(
                update(Revision)
                .where(Revision.dataset_id == crashed)
                .values(modified=machine_booted() - dt.timedelta(minutes=1))
            )
    finally:
        database.dispose()
    specstore.restart()
    status = specstore.finish("crashed", 1)
    assert status["state"] == "SUCCEEDED", status
    assert status["stats"]["count_of_rows"] > 0
    assert (specstore.root / "output" / "alice" / "crashed" / "crashed.sqlite").exists()
    log = specstore.servers[0].log.read_text()
    assert "alice/crashed/1: its pipeline file or plan is not on the disk" in log


def test_a_schedule_fires_once_per_due_time_with_two_specstore_processes(specstore, example_data):
    """``every 1m``, and two server processes on one database: a scheduled revision
    appears and SUCCEEDS on DPP, and no due time fires twice."""
    specstore.another()
    spec = carrying_its_package(example_data, dataset="scheduled")
    spec["schedule"] = "every 1m"
    specstore.upload(spec)
    deadline = time.monotonic() + 4 * 60
    succeeded = None
    while succeeded is None and time.monotonic() < deadline:
        latest = specstore.get("/source/alice/scheduled/latest")
        for number in range(2, latest["revision"] + 1):
            revision = specstore.get(f"/source/alice/scheduled/{number}")
            if revision["trigger"] == "scheduled" and revision["state"] == "SUCCEEDED":
                succeeded = revision
        time.sleep(2)
    assert succeeded is not None, "no scheduled revision succeeded in four minutes"
    latest = specstore.get("/source/alice/scheduled/latest")["revision"]
    created = [
        specstore.get(f"/source/alice/scheduled/{number}")["created"]
        for number in range(2, latest + 1)
    ]
    moments = [time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) for stamp in created]
    assert all(later - earlier >= 50 for earlier, later in itertools.pairwise(moments)), created
    # Stop the schedule: the rest of the run needs DPP to itself.
    specstore.upload(carrying_its_package(example_data, dataset="scheduled"))


def test_dpps_redis_listens_on_loopback_and_asks_for_a_password(stack):
    """Reproduced (from the code): `dpp-serve`'s Redis took anyone on its address and
    took a non-loopback --redis-host. Now it asks for the password of this start, which
    DPP's processes have (they ran the pipelines above), and anything but loopback is
    refused before anything starts."""
    with socket.create_connection((stack.redis_host, REDIS_PORT), timeout=5) as connection:
        connection.sendall(b"GET anything\r\n")
        assert connection.recv(256).startswith(b"-NOAUTH")
        connection.sendall(b"AUTH wrong\r\n")
        assert connection.recv(256).startswith(b"-WRONGPASS")
    assert stack.redis_password not in stack.log("redis")
    with pytest.raises(StackError, match=r"'10\.0\.0\.1' is not a loopback address"):
        DppStack(stack.venv, stack.root, redis_host="10.0.0.1")
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "specstore",
            "dpp-serve",
            "--venv",
            str(stack.venv),
            "--redis-host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "'0.0.0.0' is not a loopback address" in refused.stderr
