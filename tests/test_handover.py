"""An upload is stored and handed to its engine in one transaction, and never waits on the
network: what needs a fetch to be planned is planned in the background, and a revision a
stopped server left LOADED is planned by the next one. On SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from datapackage_pipelines_specstore.steps import PLANS_DIR
from sqlalchemy import event, select, text, update

from specstore.models import Revision
from specstore.pipelines.dpp import DATASET_FILE, LOCK_FILE, machine_booted
from specstore.registry import Registry
from tests.conftest import database_of, stored_datasets, stored_revisions, upload
from tests.support.pipelines import (
    carrying_its_package,
    example_spec,
    files_under,
    pipelines_for_dpp,
    wait_for,
)


@contextlib.contextmanager
def commits_on_this_thread(app) -> Iterator[list[str]]:
    """The transactions this thread commits while the block runs (runner threads aside):
    those SQLAlchemy commits, and those committed by a COMMIT statement sent to psycopg
    (the pipelined uploads and events on PostgreSQL)."""
    engine = database_of(app).engine
    thread = threading.get_ident()
    committed: list[str] = []

    def on_commit(connection) -> None:
        if threading.get_ident() == thread:
            committed.append("commit")

    sent = psycopg.Connection.execute

    def execute(connection, query, *args, **kwargs):
        if threading.get_ident() == thread and query in (b"COMMIT", "COMMIT"):
            committed.append("commit")
        return sent(connection, query, *args, **kwargs)

    event.listen(engine, "commit", on_commit)
    psycopg.Connection.execute = execute
    try:
        yield committed
    finally:
        psycopg.Connection.execute = sent
        event.remove(engine, "commit", on_commit)


def _pipelines_file(root) -> dict:
    return pipelines_for_dpp(root)


def _dpp_files(root) -> dict[str, bytes]:
    """Every file in DPP's folder but the writers' locks."""
    return {path: data for path, data in files_under(root).items() if not path.endswith(LOCK_FILE)}


def test_an_upload_carrying_its_package_is_planned_and_handed_to_dpp_in_one_transaction(
    make_app, keypair, example_data, tmp_path
):
    root = tmp_path / "dpp"
    app = make_app(dpp_pipelines_dir=str(root))
    client = app.test_client()
    upload(client, carrying_its_package(example_data), keypair.token("alice"))
    with commits_on_this_thread(app) as committed:
        response = upload(client, carrying_its_package(example_data), keypair.token("alice"))
    assert response.status_code == 200, response.get_json()
    assert committed == ["commit"]
    # When the answer went out: revision 2 waits for DPP, its plan stored and its
    # pipeline in DPP's file; revision 1, which DPP will never run, is superseded.
    assert client.get("/source/alice/gdp/status").get_json()["state"] == "REGISTERED"
    info = client.get("/source/alice/gdp/info").get_json()
    assert info["revision"] == 2 and info["queued"] is not None
    assert info["pipeline"]["specstore-revision"] == 2
    assert _pipelines_file(root)["gdp"]["specstore-revision"] == 2
    assert client.get("/source/alice/gdp/1").get_json()["errors"] == [
        "superseded by revision 2 before it ran"
    ]


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


@pytest.fixture
def refused_handover(make_app):
    """The database refuses, with an error, to record any revision as handed over (an
    upload's row inserted REGISTERED, or a LOADED one moved on)."""
    app = make_app()
    database = database_of(app)
    if database.dialect == "postgresql":
        create = [
            "CREATE FUNCTION refuse_handover() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'could not extend file: No space left on device'; END $$ "
            "LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_handover BEFORE INSERT OR UPDATE ON revisions FOR EACH ROW "
            "WHEN (NEW.state = 'REGISTERED') EXECUTE FUNCTION refuse_handover()",
        ]
        drop = ["DROP TRIGGER refuse_handover ON revisions", "DROP FUNCTION refuse_handover()"]
    else:
        create = [
            f"CREATE TRIGGER refuse_handover_{event} BEFORE {event} ON revisions "
            "WHEN NEW.state = 'REGISTERED' BEGIN "
            "SELECT RAISE(ABORT, 'database or disk is full'); END"
            for event in ("INSERT", "UPDATE")
        ]
        drop = ["DROP TRIGGER refuse_handover_INSERT", "DROP TRIGGER refuse_handover_UPDATE"]

    def run(statements: list[str]) -> None:
        with database.engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))

    yield lambda: run(create)
    with contextlib.suppress(Exception):
        run(drop)


def test_a_handover_the_database_refuses_takes_its_pipeline_back(
    make_app, refused_handover, keypair, example_data, tmp_path
):
    """The pipeline file is written before the transaction commits; when the commit
    fails, DPP's file is put back as it was, so DPP never runs a revision that was not
    stored."""
    root = tmp_path / "dpp"
    app = make_app(dpp_pipelines_dir=str(root))
    client = app.test_client()
    first = upload(client, carrying_its_package(example_data), keypair.token("alice"))
    assert first.status_code == 200
    before = _dpp_files(root)

    refused_handover()
    for dataset in ("gdp", "another"):
        response = upload(
            client, carrying_its_package(example_data, dataset=dataset), keypair.token("alice")
        )
        assert response.status_code == 500
        assert response.get_json()["errors"] == ["internal error"]

    assert _dpp_files(root) == before
    assert stored_revisions(app) == [("alice", "gdp", 1, "REGISTERED")]
    assert stored_datasets(app) == [("alice", "gdp", 1)]


def test_a_revision_a_stopped_server_left_loaded_is_planned_by_the_next(
    make_app, keypair, example_data, tmp_path
):
    """Stored, not handed over (the server stopped in between): the next server's sweep
    plans it and hands it to DPP."""
    stopped = make_app()
    spec = carrying_its_package(example_data)
    Registry(database_of(stopped)).register_revision(spec)
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
    assert _pipelines_file(root)["gdp"]["specstore-revision"] == 1
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


class OnDpp:
    """Servers on one database and one DPP folder: uploads go through one that then stops,
    as a crash of the machine stops it, its sweeper with it; the sweeps are those of a
    server started after it (by default on a machine that has just booted again), which
    has had no request (so no sweeper of its own): each runs when the test says."""

    def __init__(self, make_app, keypair, tmp_path) -> None:
        self.make_app, self.keypair = make_app, keypair
        self.root, self.output = tmp_path / "dpp", tmp_path / "output"

    def server(self):
        return self.make_app(dpp_pipelines_dir=str(self.root), output_dir=str(self.output))

    def upload(self, specs: list[dict]) -> None:
        app = self.server()
        client = app.test_client()
        for spec in specs:
            response = upload(client, spec, self.keypair.token("alice"))
            assert response.status_code == 200, response.get_json()
        app.extensions["specstore.components"].close()

    def restarted(self, booted: dt.datetime | None = None):
        """A server started again, on a machine that booted at ``booted`` (now, by
        default), and its engine (the sweep)."""
        app = self.server()
        engine = app.extensions["specstore.components"].engine
        engine.booted = booted or dt.datetime.now(dt.UTC)
        return app, engine

    def dpp_files(self) -> dict[str, bytes]:
        return _dpp_files(self.root)

    def lose(self, dataset: str) -> None:
        (self.root / "alice" / dataset / DATASET_FILE).unlink()


def _lose_the_file(on_dpp: OnDpp, before: dict[str, bytes]) -> None:
    on_dpp.lose("gdp")


def _lose_the_rename(on_dpp: OnDpp, before: dict[str, bytes]) -> None:
    """The file as it was before the upload: its rename never reached the disk."""
    (on_dpp.root / "alice" / "gdp" / DATASET_FILE).write_bytes(before["alice/gdp/" + DATASET_FILE])


def _lose_the_contents(on_dpp: OnDpp, before: dict[str, bytes]) -> None:
    """Renamed, its data never written: what some file systems leave of an unsynced file."""
    (on_dpp.root / "alice" / "gdp" / DATASET_FILE).write_bytes(b"")


def _lose_the_metadata(on_dpp: OnDpp, before: dict[str, bytes]) -> None:
    (on_dpp.output / "alice" / "gdp" / PLANS_DIR / "2.json").write_bytes(b'{"name": "gd')


def _set_modified(app, when: dt.datetime) -> None:
    with database_of(app).transaction(write=True) as session:
        session.execute(update(Revision).values(modified=when))


@pytest.mark.parametrize(
    "lose",
    [_lose_the_file, _lose_the_rename, _lose_the_contents, _lose_the_metadata],
    ids=["the file", "its rename", "its contents", "the plan's metadata file"],
)
def test_files_a_crash_of_the_machine_lost_are_written_again_by_the_sweep(
    make_app, keypair, example_data, tmp_path, caplog, lose
):
    """An upload does not wait for its files to reach the disk: the database is the
    record. A revision still waiting for DPP whose pipeline file or plan is not there as
    its upload left them is handed over again, byte for byte what DPP would have read,
    and its silence clock starts again, however long the server was down."""
    on_dpp = OnDpp(make_app, keypair, tmp_path)
    on_dpp.upload([carrying_its_package(example_data)])
    before = on_dpp.dpp_files()
    on_dpp.upload([carrying_its_package(example_data)])
    written, plans = on_dpp.dpp_files(), files_under(on_dpp.output)
    assert written != before and "alice/gdp/.plans/2.json" in plans

    lose(on_dpp, before)
    app, engine = on_dpp.restarted()
    with database_of(app).transaction() as session:
        stored = session.scalar(select(Revision.pipelines).where(Revision.revision == 2))
    # The machine was down longer than DPP_SILENCE_TIMEOUT (6 hours).
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=7)
    _set_modified(app, long_ago)
    caplog.set_level("WARNING", logger="specstore.pipelines.dpp")
    engine.sweep()

    assert on_dpp.dpp_files() == written
    # Planned again from the stored spec (on PostgreSQL its keys come back in JSONB's order).
    assert {path: json.loads(data) for path, data in files_under(on_dpp.output).items()} == {
        path: json.loads(data) for path, data in plans.items()
    }
    assert pipelines_for_dpp(on_dpp.root)["gdp"] == stored["alice/gdp"]
    assert stored_revisions(app) == [
        ("alice", "gdp", 1, "FAILED"),
        ("alice", "gdp", 2, "REGISTERED"),
    ]
    with database_of(app).transaction() as session:
        modified, pipelines = session.execute(
            select(Revision.modified, Revision.pipelines).where(Revision.revision == 2)
        ).one()
    assert pipelines == stored
    assert modified.replace(tzinfo=dt.UTC) > long_ago + dt.timedelta(hours=6)
    assert [
        record.getMessage() for record in caplog.records if record.name == "specstore.pipelines.dpp"
    ] == [
        "alice/gdp/2: its pipeline file or plan is not on the disk as its upload left them "
        "(lost in a crash of the machine): handed to DPP again"
    ]


def test_the_sweep_leaves_files_that_are_on_the_disk_alone(
    make_app, keypair, example_data, tmp_path
):
    """Nothing lost, nothing written: a revision waiting for DPP keeps its files (their
    modification times) and its silence clock."""
    on_dpp = OnDpp(make_app, keypair, tmp_path)
    on_dpp.upload([carrying_its_package(example_data, name) for name in ("gdp", "other")])
    app, engine = on_dpp.restarted()
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    _set_modified(app, long_ago)

    def times() -> dict[str, int]:
        return {
            str(path): path.stat().st_mtime_ns
            for folder in (on_dpp.root, on_dpp.output)
            for path in folder.rglob("*")
        }

    before = times()
    engine.sweep()
    assert times() == before
    with database_of(app).transaction() as session:
        modified = session.scalars(select(Revision.modified)).all()
    assert {when.replace(tzinfo=dt.UTC) for when in modified} == {long_ago}
    assert [state for *_, state in stored_revisions(app)] == ["REGISTERED", "REGISTERED"]


def test_what_was_handed_over_before_the_machine_booted_is_looked_at_once_per_process(
    make_app, keypair, example_data, tmp_path
):
    """Only a crash of the machine loses what an upload wrote, and the machine boots after
    it: a revision handed over since the boot is never read from the disk, one handed over
    before it by the first sweep of each process (not by every sweep: thousands may be
    waiting while DPP is down)."""
    on_dpp = OnDpp(make_app, keypair, tmp_path)
    on_dpp.upload([carrying_its_package(example_data, name) for name in ("gdp", "other")])
    written = on_dpp.dpp_files()
    on_dpp.lose("gdp")

    # No boot since the uploads: what they wrote cannot have been lost by a crash.
    app, engine = on_dpp.restarted(booted=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    engine.sweep()
    assert "alice/gdp/" + DATASET_FILE not in on_dpp.dpp_files()

    app, engine = on_dpp.restarted()
    engine.sweep()
    assert on_dpp.dpp_files() == written
    on_dpp.lose("other")
    engine.sweep()  # this process has looked already
    assert "alice/other/" + DATASET_FILE not in on_dpp.dpp_files()

    on_dpp.restarted()[1].sweep()
    assert on_dpp.dpp_files() == written
    assert [state for *_, state in stored_revisions(app)] == ["REGISTERED", "REGISTERED"]


def test_the_machines_boot_is_when_it_last_started_or_now_where_the_system_does_not_say(
    monkeypatch,
):
    now = dt.datetime.now(dt.UTC)
    booted = machine_booted()
    up = Path("/proc/uptime").read_text().split()[0]
    assert abs((now - booted).total_seconds() - float(up)) < 5
    monkeypatch.delattr(time, "CLOCK_BOOTTIME")
    assert abs((machine_booted() - dt.datetime.now(dt.UTC)).total_seconds()) < 1
