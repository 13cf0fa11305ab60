"""Runs of one dataset under gunicorn's workers, for real: one at a time across
processes, a newer revision's outputs never replaced by an older run's, and no
pipeline process outliving (or running beside) the one that took its revision over.

Every run here reads a CSV that a loopback server sends slowly (a row every tenth of
a second, for several seconds), so runs overlap in time unless something keeps them
apart; a sampler watches the machine's pipeline processes all along.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.net import SlowData
from tests.support.pipelines import example_spec, wait_for
from tests.support.processes import children, running
from tests.support.server import Gunicorn

FLOWRUNNER = "specstore.pipelines.flowrunner"


class Sampler:
    """Watches the pipeline processes of a gunicorn server: the most that ran at once."""

    def __init__(self, server: Gunicorn) -> None:
        self.server = server
        self.workers: set[int] = set()
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def pipelines(self) -> list[int]:
        """This server's pipeline processes (started with ``--parent <one of its workers>``),
        including those whose worker died."""
        self.workers |= {child.pid for child in children(self.server.process.pid)}
        return [
            process.pid
            for process in running(FLOWRUNNER)
            if any(f"--parent {worker}" in process.command for worker in self.workers)
        ]

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, len(self.pipelines()))
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.most


@pytest.fixture
def slow() -> Iterator[SlowData]:
    data = SlowData()
    yield data
    data.close()


def _spec(slow: SlowData, tag: str) -> dict:
    spec = example_spec(slow.url, dataset="shared")
    spec["inputs"][0]["parameters"] = {
        "descriptor": {"name": "shared", "resources": [{"name": "rows", "path": f"{tag}.csv"}]}
    }
    spec["processing"] = []
    spec["outputs"] = [{"kind": "sqlite"}]
    return spec


def post_spec(server: Gunicorn, spec: dict, keypair) -> dict:
    response = requests.post(
        server.url + "/source/upload",
        json=spec,
        headers={"Auth-Token": keypair.token("alice")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def get_json(server: Gunicorn, path: str) -> dict:
    return requests.get(server.url + path, timeout=30).json()


def _fetching(sampler: Sampler, slow: SlowData) -> list[int]:
    """The pipeline processes, once one is reading the slow data (and so, for seconds,
    writes nothing that would tell it its worker is gone)."""
    deadline = time.monotonic() + 30
    while not (slow.requests and (pipelines := sampler.pipelines())):
        assert time.monotonic() < deadline, "the pipeline did not start reading"
        time.sleep(0.02)
    return pipelines


def _parent(pipeline: int) -> int:
    """The worker that started a pipeline process (its ``--parent``)."""
    command = Path(f"/proc/{pipeline}/cmdline").read_text().split("\0")
    return int(command[command.index("--parent") + 1])


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" in status.read_text()
    except OSError:
        return True


def _published_tags(tmp_path: Path) -> tuple[str, set[str]]:
    """The revision whose outputs are published, and the tags its rows hold."""
    import sqlite3

    folder = tmp_path / "output" / "alice" / "shared"
    with sqlite3.connect(folder / "shared.sqlite") as connection:
        tags = {row[0] for row in connection.execute("SELECT tag FROM rows")}
    return (folder / ".revision").read_text(), tags


def test_two_workers_run_one_dataset_one_revision_at_a_time(gunicorn, slow, keypair, tmp_path):
    """Revision 1 reads slowly; revision 2, uploaded while it runs, waits for it (in
    whichever worker took it) and its outputs are the ones that stay."""
    server = gunicorn(RUNNER_WORKERS="2")
    sampler = Sampler(server)
    try:
        post_spec(server, _spec(slow, "first"), keypair)
        wait_for(lambda: get_json(server, "/source/alice/shared/1"), states=("RUNNING",))
        for _ in range(3):  # a few more, to reach both workers
            post_spec(server, _spec(slow, "second"), keypair)
        final = wait_for(lambda: get_json(server, "/source/alice/shared/status"), timeout=120)
        for number in (1, 2, 3):
            wait_for(lambda number=number: get_json(server, f"/source/alice/shared/{number}"))
    finally:
        most = sampler.stop()
    assert most == 1, "two runs of one dataset overlapped"
    assert final["state"] == "SUCCEEDED", final
    states = [get_json(server, f"/source/alice/shared/{n}") for n in (1, 2, 3, 4)]
    assert [state["state"] for state in states] == ["SUCCEEDED", "FAILED", "FAILED", "SUCCEEDED"]
    assert states[1]["errors"] == ["superseded by revision 4 before it ran"]
    assert _published_tags(tmp_path) == ("4", {"second"})


def test_a_worker_killed_mid_run_leaves_nothing_running_and_the_run_is_taken_over(
    gunicorn, keypair, tmp_path
):
    server = gunicorn(RUNNER_WORKERS="1", RUNNER_LEASE_SECONDS="3")
    sampler = Sampler(server)
    slow = SlowData(rows=100)  # ten seconds: the pipeline process writes nothing meanwhile
    try:
        post_spec(server, _spec(slow, "only"), keypair)
        pipelines = _fetching(sampler, slow)
        first = pipelines[0]
        os.kill(_parent(first), signal.SIGKILL)
        # The kernel kills the pipeline process with the worker that started it (left
        # alone, it would go on reading for seconds before it noticed).
        deadline = time.monotonic() + 2
        while not _gone(first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(first), "the pipeline process outlived its worker"
        # The other worker (or the new one) takes the revision over once its lease ran out.
        final = wait_for(lambda: get_json(server, "/source/alice/shared/status"), timeout=120)
    finally:
        most = sampler.stop()
        slow.close()
    assert most == 1
    assert final["state"] == "SUCCEEDED", final
    assert _published_tags(tmp_path) == ("1", {"only"})


def test_a_takeover_first_kills_the_run_a_frozen_worker_left_going(gunicorn, keypair, tmp_path):
    """A worker that stops renewing its leases (frozen here with SIGSTOP) still has its
    pipeline process running: whoever takes the revision over kills it first."""
    server = gunicorn(RUNNER_WORKERS="1", RUNNER_LEASE_SECONDS="3", GUNICORN_TIMEOUT="120")
    sampler = Sampler(server)
    slow = SlowData(rows=100)
    frozen = None
    try:
        post_spec(server, _spec(slow, "only"), keypair)
        pipelines = _fetching(sampler, slow)
        first = pipelines[0]
        frozen = _parent(first)
        os.kill(frozen, signal.SIGSTOP)
        final = wait_for(lambda: get_json(server, "/source/alice/shared/status"), timeout=120)
        assert _gone(first), "the left-behind pipeline process is still running"
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        most = sampler.stop()
        slow.close()
    assert most == 1
    assert final["state"] == "SUCCEEDED", final
    info = get_json(server, "/source/alice/shared/info")
    assert json.dumps(info).count("superseded") == 0
    assert _published_tags(tmp_path) == ("1", {"only"})
