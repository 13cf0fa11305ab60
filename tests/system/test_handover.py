"""Uploads that run for real after their handover: on the embedded runner, on DPP for
names DPP would skip, and left LOADED by a stopped server or a busy planner."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest
from sqlalchemy import select, update

from specstore.pipelines.dpp import DATASET_FILE
from specstore.store.models import Revision
from specstore.store.revisions import Revisions
from tests.support.api import database_of, stored_revisions, upload
from tests.support.pipelines import (
    carrying_its_package,
    example_spec,
    pipelines_for_dpp,
    wait_for,
)
from tests.support.transactions import commits_on_this_thread


@pytest.mark.parametrize("dataset", [".hidden", "..x"])
def test_datasets_named_with_a_leading_dot_run_on_both_engines(
    make_app, keypair, example_data, tmp_path, dataset
):
    """DPP skips folders whose names start with a dot: such a dataset's pipeline file is
    in a folder starting with %2E, where DPP finds it; the embedded runner runs it."""
    root = tmp_path / "dpp"
    on_dpp = make_app(dpp_pipelines_dir=str(root)).test_client()
    response = upload(on_dpp, carrying_its_package(example_data, dataset), keypair.token("alice"))
    assert response.status_code == 200, response.get_json()
    assert on_dpp.get(f"/source/alice/{dataset}/status").get_json()["state"] == "REGISTERED"
    assert (root / "alice" / f"%2E{dataset[1:]}" / DATASET_FILE).is_file()
    assert pipelines_for_dpp(root)[dataset]["specstore-revision"] == 1

    embedded = make_app(runner_workers=1, output_dir=str(tmp_path / "output")).test_client()
    response = upload(embedded, carrying_its_package(example_data, dataset), keypair.token("alice"))
    assert response.status_code == 200, response.get_json()
    status = wait_for(lambda: embedded.get(f"/source/alice/{dataset}/status").get_json())
    assert status["state"] == "SUCCEEDED", status
    assert (tmp_path / "output" / "alice" / dataset / "datapackage" / "datapackage.json").is_file()


def test_an_upload_on_the_embedded_runner_is_queued_in_one_transaction(
    make_app, keypair, example_data
):
    app = make_app(runner_workers=1)
    client = app.test_client()
    with commits_on_this_thread(app) as committed:
        response = upload(client, example_spec(example_data), keypair.token("alice"))
    assert response.status_code == 200, response.get_json()
    assert committed == ["commit"]
    revision = client.get("/source/alice/gdp/1").get_json()
    assert revision["state"] in ("REGISTERED", "RUNNING", "SUCCEEDED"), revision
    final = wait_for(lambda: client.get("/source/alice/gdp/status").get_json())
    assert final["state"] == "SUCCEEDED", final


def test_a_revision_a_stopped_server_left_loaded_is_planned_by_the_next(
    make_app, keypair, example_data, tmp_path
):
    """Stored, not handed over (the server stopped in between): the next server's sweep
    plans it and hands it to DPP."""
    stopped = make_app()
    spec = carrying_its_package(example_data)
    with Revisions(database_of(stopped)).upload(spec):
        pass  # stored LOADED, and never handed over
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with database_of(stopped).transaction(write=True) as session:
        session.execute(update(Revision).values(modified=long_ago))
    assert stored_revisions(stopped) == [("alice", "gdp", 1, "LOADED")]

    root = tmp_path / "dpp"
    restarted = make_app(dpp_pipelines_dir=str(root))
    restarted.extensions["specstore.components"].start_engine()
    client = restarted.test_client()
    status = wait_for(
        lambda: client.get("/source/alice/gdp/status").get_json(), states=("REGISTERED",)
    )
    assert status["errors"] == []
    assert pipelines_for_dpp(root)["gdp"]["specstore-revision"] == 1
    with database_of(restarted).transaction() as session:
        assert session.scalar(select(Revision.pipelines)) is not None


def test_uploads_past_the_planners_backlog_wait_loaded_for_the_sweep(make_app, keypair, tmp_path):
    """More uploads that need a fetch than one process's planners and their backlog
    take: the rest are held nowhere in memory, they wait LOADED in the database, and the
    sweep plans them like any other LOADED revision."""
    with socket.socket() as silent:
        # A server that takes connections (the kernel does) and never answers: every
        # fetch from it runs to the deadline.
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        app = make_app(
            dpp_pipelines_dir=str(tmp_path / "dpp"), dpp_planning_backlog=1, download_timeout=1
        )
        client = app.test_client()
        names = [f"waiting-{number}" for number in range(6)]
        started = time.monotonic()
        for name in names:
            response = upload(client, example_spec(url, dataset=name), keypair.token("alice"))
            assert response.status_code == 200, response.get_json()
        assert time.monotonic() - started < 1, "the uploads were meant to come within a second"

        def states() -> list[str]:
            return [state for _, _, _, state in sorted(stored_revisions(app))]

        # Two planners and one waiting: the first three, each cut off at the 1 s deadline.
        timed_out = f"the data package {url}datapackage.json took longer than 1 s"
        for name in names[:3]:
            status = wait_for(lambda name=name: client.get(f"/source/alice/{name}/status").json)
            assert (status["state"], status["errors"]) == ("FAILED", [timed_out])
        # Time for two more deadlines: no planner takes the rest up.
        time.sleep(2.5)
        assert states() == ["FAILED"] * 3 + ["LOADED"] * 3

        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        with database_of(app).transaction(write=True) as session:
            session.execute(
                update(Revision).where(Revision.state == "LOADED").values(modified=long_ago)
            )
        # The sweep gives them to the planners, in turn with any upload's.
        app.extensions["specstore.components"].engine.sweep()
        for name in names[3:]:
            wait_for(lambda name=name: client.get(f"/source/alice/{name}/status").json)
        assert states() == ["FAILED"] * 6
        for name in names[3:]:
            status = client.get(f"/source/alice/{name}/status").json
            assert status["errors"] == [timed_out]
