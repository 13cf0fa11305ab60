"""Specs become pipelines and run for real on the embedded runner: real files served
on loopback, real dataflows, real SQLite, zip and PostgreSQL outputs; a pipeline process
killed ends its revision FAILED."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import update

from specstore.store.models import Revision
from specstore.store.records import RevisionRef
from tests.support.api import (
    database_of,
    post_event,
    status_of,
    stored_revisions,
    stored_row_id,
    upload,
)
from tests.support.net import StaticFiles
from tests.support.pipelines import (
    GDP_ROWS,
    POPULATION_ROWS,
    database_tables,
    example_spec,
    files_under,
    sqlite_tables,
    wait_for,
    zip_members,
)
from tests.support.processes import children


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


def test_a_spec_runs_for_real_to_every_output(
    runner_app, keypair, example_data, warehouse, tmp_path
):
    client = runner_app.test_client()
    spec = example_spec(example_data)
    spec["outputs"].append({"kind": "rdbms", "parameters": {"engine": "warehouse"}})
    assert upload(client, spec, keypair.token("alice")).status_code == 200

    status = wait_for(status_of(client))
    assert status["state"] == "SUCCEEDED", client.get("/source/alice/gdp/info").get_json()
    assert status["stats"]["count_of_rows"] == 6
    assert status["stats"]["dataset_name"] == "gdp"
    assert set(status["stats"]) >= {"count_of_rows", "bytes", "hash", "dataset_name"}
    assert any("running 10 steps" in line for line in status["logs"])

    out = tmp_path / "output" / "alice" / "gdp"
    tables = sqlite_tables(out / "gdp.sqlite")
    assert tables["gdp"] == {
        "columns": {"country": "TEXT", "year": "INTEGER", "gdp_usd_bn": "FLOAT"},
        "rows": GDP_ROWS,
    }
    assert tables["population"] == {
        "columns": {"country": "TEXT", "year": "INTEGER", "population": "INTEGER"},
        "rows": POPULATION_ROWS,
    }

    # In the shared database, the tables are the owner's and the dataset's own.
    in_postgres = database_tables(warehouse)
    assert sorted(in_postgres) == ["alice/gdp/gdp", "alice/gdp/population"]
    in_postgres = {name.removeprefix("alice/gdp/"): table for name, table in in_postgres.items()}
    # PostgreSQL keeps numbers exact (NUMERIC); SQLite has FLOAT.
    assert in_postgres["gdp"] == {
        "columns": {"country": "TEXT", "year": "INTEGER", "gdp_usd_bn": "NUMERIC"},
        "rows": [(country, year, Decimal(str(value))) for country, year, value in GDP_ROWS],
    }
    assert in_postgres["population"]["rows"] == POPULATION_ROWS
    assert in_postgres["population"]["columns"]["population"] in ("INTEGER", "BIGINT")

    package = files_under(out / "datapackage")
    assert sorted(package) == ["datapackage.json", "gdp.csv", "population.csv"]
    descriptor = json.loads(package["datapackage.json"])
    assert descriptor["name"] == "gdp"
    assert descriptor["title"] == "GDP and population of three countries"
    assert [r["path"] for r in descriptor["resources"]] == ["gdp.csv", "population.csv"]
    population_fields = descriptor["resources"][1]["schema"]["fields"]
    assert [(f["name"], f["type"]) for f in population_fields] == [
        ("country", "string"),
        ("year", "integer"),
        ("population", "integer"),
    ]
    assert package["population.csv"].decode().splitlines() == [
        "country,year,population",
        "France,2019,67012883",
        "Germany,2019,83019213",
        "Italy,2019,60359546",
    ]

    archive = zip_members(out / "gdp.zip")
    assert sorted(archive) == ["datapackage.json", "gdp.csv", "population.csv"]
    assert archive["gdp.csv"] == package["gdp.csv"]

    info = client.get("/source/alice/gdp/info").get_json()
    assert info["pipeline"]["specstore-revision"] == 1
    assert [step["run"] for step in info["pipeline"]["pipeline"]][:3] == [
        "specstore.stage",
        "specstore.load",
        "update_package",
    ]
    assert info["success"] is True and info["error_log"] == []
    assert info["queued"] <= info["started"] <= info["ended"]


def test_a_resource_that_cannot_be_read_fails_with_the_reason(runner_app, keypair, example_data):
    client = runner_app.test_client()
    spec = example_spec(example_data)
    spec["inputs"][0]["parameters"]["resource-mapping"]["gdp"] = example_data + "missing.csv"
    upload(client, spec, keypair.token("alice"))

    status = wait_for(status_of(client))
    assert status["state"] == "FAILED"
    info = client.get("/source/alice/gdp/info").get_json()
    assert info["success"] is False
    assert info["error_log"] == [
        f"resource gdp: {example_data}missing.csv cannot be read: HTTP 404"
    ]
    assert status["errors"] == info["error_log"]


def test_a_data_package_that_cannot_be_read_fails(runner_app, keypair, example_data):
    client = runner_app.test_client()
    spec = example_spec(example_data)
    spec["inputs"][0]["url"] = example_data + "nothing/datapackage.json"
    upload(client, spec, keypair.token("alice"))

    assert wait_for(status_of(client))["state"] == "FAILED"
    error_log = client.get("/source/alice/gdp/info").get_json()["error_log"]
    assert error_log == [
        f"the data package {example_data}nothing/datapackage.json cannot be read: HTTP 404"
    ]


def test_a_spec_that_cannot_be_planned_is_invalid(runner_app, keypair, example_data):
    client = runner_app.test_client()
    spec = example_spec(example_data)
    spec["processing"][0]["input"] = "nonexistent"
    upload(client, spec, keypair.token("alice"))

    assert wait_for(status_of(client))["state"] == "INVALID"
    info = client.get("/source/alice/gdp/info").get_json()
    assert info["error_log"] == [
        "processing[0].input: the data package has no resource 'nonexistent'"
    ]


def test_a_superseded_revision_is_not_run_after_the_newer_one(make_app, keypair, example_data):
    stored_only = make_app()  # stores, runs nothing
    client = stored_only.test_client()
    first = upload(client, example_spec(example_data), keypair.token("alice")).get_json()
    upload(client, example_spec(example_data), keypair.token("alice"))

    runner_app = make_app(runner_workers=1)
    runner = runner_app.extensions["specstore.components"].engine
    runner.dispatch(RevisionRef("alice", "gdp", 2, stored_row_id(runner_app, "alice", "gdp", 2)))
    runner.dispatch(RevisionRef("alice", "gdp", 1, stored_row_id(runner_app, "alice", "gdp", 1)))
    status = wait_for(status_of(runner_app.test_client()))
    assert status["state"] == "SUCCEEDED"
    old = wait_for(lambda: runner_app.test_client().get("/source/alice/gdp/1").get_json())
    assert old["state"] == "FAILED"
    assert old["errors"] == ["superseded by revision 2 before it ran"]
    assert first["revision"] == 1


def test_revisions_left_behind_by_a_stopped_server_run_on_the_next_start(
    make_app, keypair, example_data
):
    stopped = make_app()
    client = stopped.test_client()
    for dataset in ("registered", "running", "loaded"):
        upload(client, example_spec(example_data, dataset=dataset), keypair.token("alice"))
    post_event(client, {"pipeline_id": "alice/registered", "event": "queue"})
    post_event(client, {"pipeline_id": "alice/running", "event": "start"})
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with database_of(stopped).transaction(write=True) as session:
        session.execute(
            update(Revision).values(modified=long_ago, lease_owner="gone:1", lease_until=long_ago)
        )
    assert [row[3] for row in stored_revisions(stopped)] == ["LOADED", "REGISTERED", "RUNNING"]

    restarted = make_app(runner_workers=2)
    restarted.extensions["specstore.components"].start_engine()
    client = restarted.test_client()
    for dataset in ("registered", "running", "loaded"):
        status = wait_for(status_of(client, dataset=dataset))
        assert status["state"] == "SUCCEEDED", (dataset, status)
        assert status["stats"]["count_of_rows"] == 6


def test_a_run_past_its_time_limit_fails_with_the_reason(make_app, keypair, example_data):
    slow = ThreadingHTTPServer(("127.0.0.1", 0), _SlowFiles)
    slow.daemon_threads = True
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    try:
        app = make_app(runner_workers=1, run_timeout=3)
        client = app.test_client()
        spec = example_spec(example_data)
        spec["inputs"][0]["parameters"]["resource-mapping"]["gdp"] = (
            f"http://127.0.0.1:{slow.server_address[1]}/gdp.csv"
        )
        started = time.monotonic()
        upload(client, spec, keypair.token("alice"))
        status = wait_for(status_of(client), timeout=60)
        assert status["state"] == "FAILED"
        assert time.monotonic() - started < 30
        info = client.get("/source/alice/gdp/info").get_json()
        assert info["error_log"] == ["the pipeline ran past the time limit of 3 s"]
    finally:
        slow.shutdown()
        slow.server_close()


def test_the_processed_files_of_one_dataset_do_not_touch_another(
    runner_app, keypair, example_data, tmp_path
):
    client = runner_app.test_client()
    upload(client, example_spec(example_data, dataset="one"), keypair.token("alice"))
    upload(client, example_spec(example_data, dataset="two"), keypair.token("alice"))
    assert wait_for(status_of(client, dataset="one"))["state"] == "SUCCEEDED"
    assert wait_for(status_of(client, dataset="two"))["state"] == "SUCCEEDED"
    root = tmp_path / "output" / "alice"
    assert sorted(path.name for path in root.iterdir()) == ["one", "two"]
    assert sorted(path.name for path in (root / "one").iterdir() if path.name[0] != ".") == [
        "datapackage",
        "gdp.zip",
        "one.sqlite",
    ]
    assert Path(root / "two" / "two.sqlite").exists()


def test_tabulator_options_reach_the_loader(runner_app, keypair, tmp_path):
    """A latin-1, semicolon-separated file with a note above its header and a comment row."""
    data = tmp_path / "served"
    data.mkdir()
    (data / "prices.csv").write_bytes(
        "Prices in euro\n"
        "city;café;price\n"
        "# not a row\n"
        "Zürich;Grüß Gott;4.5\n"
        "Paris;Le Procope;3.2\n".encode("latin-1")
    )
    (data / "datapackage.json").write_text(
        json.dumps({"name": "prices", "resources": [{"name": "prices", "path": "prices.csv"}]})
    )
    with StaticFiles(str(data)) as served:
        spec = example_spec(served.url, dataset="prices")
        spec["inputs"][0]["parameters"] = {}
        spec["processing"] = [
            {
                "input": "prices",
                "output": "prices",
                "tabulator": {
                    "format": "csv",
                    "headers": 2,
                    "delimiter": ";",
                    "encoding": "latin-1",
                    "skip_rows": ["#"],
                },
            }
        ]
        spec["outputs"] = [{"kind": "sqlite"}]
        client = runner_app.test_client()
        upload(client, spec, keypair.token("alice"))
        status = wait_for(status_of(client, dataset="prices"))

    assert status["state"] == "SUCCEEDED", client.get("/source/alice/prices/info").get_json()
    table = sqlite_tables(tmp_path / "output" / "alice" / "prices" / "prices.sqlite")["prices"]
    assert table == {
        "columns": {"city": "TEXT", "café": "TEXT", "price": "FLOAT"},
        "rows": [("Paris", "Le Procope", 3.2), ("Zürich", "Grüß Gott", 4.5)],
    }


def test_the_seeds_resource_info_is_planned_with_its_schemas(
    runner_app, keypair, example_data, tmp_path
):
    """``inputs[0].parameters.resource_info`` (the original specstore's shape): name, path,
    format and schema per resource; the declared types are the ones kept."""
    client = runner_app.test_client()
    spec = example_spec(example_data, dataset="info")
    spec["inputs"][0]["parameters"] = {
        "resource_info": [
            {
                "name": "gdp",
                "path": "gdp-2019.csv",
                "format": "csv",
                "schema": {
                    "fields": [
                        {"name": "country", "type": "string"},
                        {"name": "year", "type": "string"},
                        {"name": "gdp_usd_bn", "type": "number"},
                    ]
                },
            }
        ]
    }
    spec["processing"] = []
    spec["outputs"] = [{"kind": "sqlite"}]
    assert upload(client, spec, keypair.token("alice")).status_code == 200
    status = wait_for(status_of(client, dataset="info"))
    assert status["state"] == "SUCCEEDED", status
    table = sqlite_tables(tmp_path / "output" / "alice" / "info" / "info.sqlite")["gdp"]
    assert table["columns"]["year"] == "TEXT"
    assert [row[1] for row in table["rows"]] == ["2019", "2019", "2019"]


def test_data_that_does_not_fit_its_schema_fails_naming_the_row_and_field(
    runner_app, keypair, tmp_path
):
    served = tmp_path / "served"
    served.mkdir()
    (served / "years.csv").write_text("country,year\nFrance,2019\nItaly,19x9\n")
    with StaticFiles(str(served)) as files:
        spec = example_spec(files.url, dataset="years")
        schema = {"fields": [{"name": "country"}, {"name": "year", "type": "integer"}]}
        spec["inputs"][0]["parameters"] = {
            "descriptor": {
                "name": "years",
                "resources": [{"name": "years", "path": "years.csv", "schema": schema}],
            }
        }
        spec["processing"] = []
        spec["outputs"] = []
        client = runner_app.test_client()
        assert upload(client, spec, keypair.token("alice")).status_code == 200
        status = wait_for(status_of(client, dataset="years"))
    assert status["state"] == "FAILED"
    assert status["errors"][0].startswith(
        "1 value breaks the schema (type-or-format-error: 1); every problem is in the "
        "validation report: "
    )
    assert status["errors"][1:] == [
        "resource years, data row 2, field 'year': a text of 4 characters is not a valid integer"
    ]
    # Nothing of the failed run is published.
    assert not (tmp_path / "output" / "alice" / "years" / "datapackage").exists()


def test_dates_are_read_as_the_schema_says_and_an_impossible_one_is_refused(
    runner_app, keypair, tmp_path
):
    served = tmp_path / "served"
    served.mkdir()
    (served / "days.csv").write_text("day\n2020-01-31\n2021-02-29\n2020-1-5\n")
    with StaticFiles(str(served)) as files:
        spec = example_spec(files.url, dataset="days")
        schema = {"fields": [{"name": "day", "type": "date"}]}
        spec["inputs"][0]["parameters"] = {
            "descriptor": {
                "name": "days",
                "resources": [{"name": "days", "path": "days.csv", "schema": schema}],
            }
        }
        spec["processing"] = []
        spec["outputs"] = []
        client = runner_app.test_client()
        assert upload(client, spec, keypair.token("alice")).status_code == 200
        status = wait_for(status_of(client, dataset="days"))
    assert status["state"] == "FAILED"
    assert status["errors"][1:] == [
        "resource days, data row 2, field 'day': a text of 10 characters is not a valid date"
    ]


class _SlowFiles(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(30)

    def log_message(self, *args):
        pass


def _flowrunner_children() -> list[int]:
    """Pipeline processes started by this test process."""
    return [child.pid for child in children(os.getpid()) if "flowrunner" in child.command]
