"""An upload is stored and handed to DPP in one transaction, a handover the database
refuses is taken back, and the sweep writes again what a crash lost. On SQLite and
PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest
from datapackage_pipelines_specstore.steps import PLANS_DIR
from sqlalchemy import select, text, update

from specstore.pipelines.dpp import DATASET_FILE, LOCK_FILE
from specstore.store.models import Revision
from tests.support.api import database_of, stored_datasets, stored_revisions, upload
from tests.support.pipelines import (
    carrying_its_package,
    files_under,
    pipelines_for_dpp,
)
from tests.support.transactions import commits_on_this_thread


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
    assert pipelines_for_dpp(root)["gdp"]["specstore-revision"] == 2
    assert client.get("/source/alice/gdp/1").get_json()["errors"] == [
        "superseded by revision 2 before it ran"
    ]


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
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("specstore.pipelines.dpp")
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
