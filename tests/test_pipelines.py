"""Specs become pipelines and run for real on the embedded runner: real files served
on loopback, real dataflows, real SQLite, zip and PostgreSQL outputs."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from datapackage_pipelines_specstore.fetch import Limits
from sqlalchemy import update

from specstore.config import configure
from specstore.events import INVALID
from specstore.models import Revision
from specstore.pipelines.planner import OutputLayout, PlanError, Planner
from tests.conftest import database_of, post_event, stored_revisions, upload
from tests.support.net import StaticFiles
from tests.support.pipelines import (
    EXAMPLE_DATA,
    database_tables,
    example_spec,
    files_under,
    sqlite_tables,
    wait_for,
    zip_members,
)

GDP_ROWS = [("France", 2019, 2728.87), ("Germany", 2019, 3888.33), ("Italy", 2019, 2011.3)]
POPULATION_ROWS = [
    ("France", 2019, 67012883),
    ("Germany", 2019, 83019213),
    ("Italy", 2019, 60359546),
]
_databases = itertools.count()


@pytest.fixture
def warehouse(postgres_server):
    """A fresh PostgreSQL database for `rdbms` outputs."""
    return postgres_server.create_database(f"warehouse_{next(_databases)}")


@pytest.fixture
def runner_app(make_app, warehouse, tmp_path):
    # ENGINE_<NAME> as PostgreSQL hosts hand it out: postgres://, no driver named.
    plain = warehouse.replace("postgresql://", "postgres://")
    engines = configure({"ENGINE_WAREHOUSE": plain}).engines
    return make_app(runner_workers=2, engines=engines)


def _status(client, dataset="gdp"):
    return lambda: client.get(f"/source/alice/{dataset}/status").get_json()


# -- planning -------------------------------------------------------------------------


def _planner(tmp_path, engines=None):
    engines = engines or {}
    limits = Limits(timeout=5, max_bytes=1024 * 1024)
    return Planner(
        OutputLayout(tmp_path), lambda name: engines.get(name.upper()), limits, run_timeout=60
    )


def test_the_plan_is_dpp_pipeline_steps(tmp_path):
    base = "http://files.test/"
    spec = example_spec(base)
    spec["outputs"].append({"kind": "rdbms", "parameters": {"engine": "warehouse"}})
    descriptor = json.loads((EXAMPLE_DATA / "datapackage.json").read_text())
    plan = _planner(tmp_path).plan(spec, 3, descriptor, hooks=["http://specstore/hook"])

    assert plan.main_id == "alice/gdp"
    out = tmp_path.resolve() / "alice" / "gdp"
    staging = out / ".staging" / "3"
    limits = {
        "allow": [],
        "timeout": 5,
        "max_bytes": 1024 * 1024,
        "max_unpacked_bytes": 1024 * 1024 * 1024,
        "allow_networks": [],
        "ports": [],
    }
    tables = {"gdp": {"resource-name": "gdp"}, "population": {"resource-name": "population"}}
    # In a database other owners write into, the tables are the owner's and dataset's own.
    owned = {
        "alice/gdp/gdp": {"resource-name": "gdp"},
        "alice/gdp/population": {"resource-name": "population"},
    }
    assert plan.main == {
        "title": "alice/gdp revision 3",
        "specstore-revision": 3,
        "hooks": ["http://specstore/hook"],
        "pipeline": [
            {
                "run": "specstore.stage",
                "parameters": {"staging": str(staging), "revision": 3, "run-timeout": 60},
            },
            {
                "run": "specstore.load",
                "parameters": {
                    "resources": [
                        {
                            "url": base + "gdp-2019.csv",
                            "name": "gdp",
                            "format": "csv",
                            "path": "gdp.csv",
                        },
                        {
                            "url": base + "population.xlsx",
                            "name": "population",
                            "format": "xlsx",
                            "path": "population.csv",
                            "options": {"headers": 2, "sheet": 1},
                        },
                    ],
                    "staging": str(staging),
                    "limits": limits,
                    "run-timeout": 60,
                },
            },
            {"run": "update_package", "parameters": {"name": "gdp"}},
            {
                "run": "specstore.dump_to_sql",
                "parameters": {"tables": tables, "engine": f"sqlite:///{staging / 'gdp.sqlite'}"},
            },
            {
                "run": "specstore.dump_to_sql",
                "parameters": {"tables": owned, "engine": "env://ENGINE_WAREHOUSE"},
            },
            {"run": "dump_to_path", "parameters": {"out-path": str(staging / "datapackage")}},
            {
                "run": "specstore.package",
                "parameters": {
                    "path": str(staging / "datapackage"),
                    "metadata": str(out / ".plans" / "3.json"),
                    "zips": [str(staging / "gdp.zip")],
                },
            },
            {
                "run": "specstore.publish",
                "parameters": {
                    "staging": str(staging),
                    "target": str(out),
                    "revision": 3,
                    "run-timeout": 60,
                },
            },
        ],
    }
    # What is too large for a step's parameters (DPP passes them on a command line) rides
    # in a file beside the outputs: every property of the descriptor, for specstore.package.
    assert plan.attachments == {
        str(out / ".plans" / "3.json"): {
            "package": {
                "title": "GDP and population of three countries",
                "description": descriptor["description"],
                "licenses": descriptor["licenses"],
            },
            "tables": {"gdp": {}, "population": {}},
            "files": [],
            "inline": [],
        }
    }


def test_one_input_can_feed_several_outputs_and_the_rest_load_as_they_are(tmp_path):
    spec = example_spec("http://files.test/")
    spec["processing"] = [
        {"input": "population.xlsx", "output": "sheet-one", "tabulator": {"sheet": 1}},
        {"input": "population", "output": "sheet-two", "tabulator": {"sheet": 2, "headers": 1}},
    ]
    descriptor = json.loads((EXAMPLE_DATA / "datapackage.json").read_text())
    loads = next(
        step["parameters"]["resources"]
        for step in _planner(tmp_path).plan(spec, 1, descriptor).main["pipeline"]
        if step["run"] == "specstore.load"
    )
    assert [(load["name"], load.get("options", {}).get("sheet")) for load in loads] == [
        ("gdp", None),
        ("sheet-one", 1),
        ("sheet-two", 2),
    ]


@pytest.mark.parametrize(
    ("descriptor", "processing", "message"),
    [
        (
            {"resources": [{"name": "a", "path": ["x.csv", "y.csv"]}]},
            [],
            "resource a: only resources with one",
        ),
        ({"resources": [{"name": "A b", "path": "x.csv"}]}, [], "resource 'A b': names are"),
        (
            {"resources": [{"name": "a", "path": "file:///etc/passwd"}]},
            [],
            "resource a: only http and https URLs can be fetched",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv"}]},
            [{"input": "b", "output": "c", "tabulator": {}}],
            "processing[0].input: the data package has no resource 'b'",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv"}, {"name": "b", "path": "b.csv"}]},
            [{"input": "a", "output": "b", "tabulator": {}}],
            "resource 'b': two resources have this name",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv"}]},
            [{"input": "a", "output": "a", "tabulator": {"format": "datapackage"}}],
            "resource 'a': 'datapackage' is not a table format",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv"}]},
            [{"input": "a", "output": "a", "tabulator": {"format": "sql"}}],
            "resource 'a': 'sql' is not a table format",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv", "schema": {"fields": "year"}}]},
            [],
            "resource 'a': its schema is not a Table Schema",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv", "schema": {"fields": [{"type": "x"}]}}]},
            [],
            "resource 'a': its schema is not a valid Table Schema",
        ),
        (
            {
                "resources": [
                    {"name": "a", "path": "a.csv"},
                    {"name": "b", "path": "a.csv", "format": "pdf"},
                ]
            },
            [],
            "resource 'b': two files would be 'a.csv'",
        ),
        (
            {"resources": [{"name": "d", "path": "DataPackage.json"}]},
            [],
            "resource 'd': two files would be 'DataPackage.json'",
        ),
    ],
)
def test_specs_that_cannot_become_pipelines_are_invalid(tmp_path, descriptor, processing, message):
    spec = example_spec("http://files.test/")
    spec["inputs"][0]["parameters"] = {}
    spec["processing"] = processing
    with pytest.raises(PlanError) as raised:
        _planner(tmp_path).plan(spec, 1, descriptor)
    assert raised.value.state == INVALID
    assert raised.value.messages[0].startswith(message), raised.value.messages


def test_output_paths_stay_inside_the_output_folder(tmp_path):
    layout = OutputLayout(tmp_path)
    refused = [("..", ".."), ("alice", "../../x"), ("/etc", "x"), ("alice", "."), ("", "x")]
    refused += [("alice", "a\\b"), ("alice", "nul\0")]
    for owner, dataset in refused:
        with pytest.raises(PlanError):
            layout.dataset_dir(owner, dataset)
    assert layout.staging("alice", "gdp", 2) == tmp_path.resolve() / "alice/gdp/.staging/2"


@pytest.mark.parametrize(
    ("path", "planned"),
    [
        ("docs/report.pdf", "docs/report.pdf"),
        ("Annual Report (2019).pdf", "Annual Report (2019).pdf"),
        ("../../../etc/report.pdf", "report.pdf"),
        ("/etc/passwd", "report.pdf"),
        ("http://elsewhere.test/x/report.pdf", "report.pdf"),
        ("a\\..\\b.pdf", "report.pdf"),
        (".hidden/report.pdf", "report.pdf"),
        ("a/%2e%2e/report.pdf", "report.pdf"),
    ],
)
def test_files_keep_their_path_only_when_it_is_plain(tmp_path, path, planned):
    spec = example_spec("http://files.test/")
    spec["processing"] = []
    descriptor = {"resources": [{"name": "report", "path": path, "format": "pdf"}]}
    plan = _planner(tmp_path).plan(spec, 1, descriptor).main["pipeline"]
    load = next(step["parameters"] for step in plan if step["run"] == "specstore.load")
    assert load["resources"][0]["file"] == planned
    metadata = next(iter(_planner(tmp_path).plan(spec, 1, descriptor).attachments.values()))
    assert metadata["files"] == [{"name": "report", "format": "pdf", "path": planned}]


# -- at upload ---------------------------------------------------------------------------


def test_an_rdbms_output_naming_an_unknown_connection_is_400(make_app, keypair):
    app = make_app(engines={"WAREHOUSE": "postgresql://x"})
    spec = example_spec("http://files.test/")
    spec["outputs"] = [{"kind": "rdbms", "parameters": {"engine": "elsewhere"}}]
    response = upload(app.test_client(), spec, keypair.token("alice"))

    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        "outputs[0].parameters.engine: no database connection named 'elsewhere' is configured "
        "on this server"
    ]
    assert stored_revisions(app) == []


def test_an_rdbms_output_must_name_a_connection_not_give_one(make_app, keypair):
    app = make_app()
    spec = example_spec("http://files.test/")
    spec["outputs"] = [{"kind": "rdbms", "parameters": {"engine": "postgresql://u:p@db/x"}}]
    response = upload(app.test_client(), spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json()["errors"][0].startswith("outputs[0].parameters.engine: ")
    assert stored_revisions(app) == []


@pytest.mark.parametrize("name", ["../../x.zip", "/tmp/x.zip", "a/b.zip", "..", "."])
def test_zip_file_names_that_would_leave_the_output_folder_are_400(make_app, keypair, name):
    app = make_app()
    spec = example_spec("http://files.test/")
    spec["outputs"] = [{"kind": "zip", "parameters": {"out-file": name}}]
    response = upload(app.test_client(), spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json()["errors"][0].startswith("outputs[0].parameters['out-file']: ")
    assert stored_revisions(app) == []


# -- running ------------------------------------------------------------------------------


def test_a_spec_runs_for_real_to_every_output(
    runner_app, keypair, example_data, warehouse, tmp_path
):
    client = runner_app.test_client()
    spec = example_spec(example_data)
    spec["outputs"].append({"kind": "rdbms", "parameters": {"engine": "warehouse"}})
    assert upload(client, spec, keypair.token("alice")).status_code == 200

    status = wait_for(_status(client))
    assert status["state"] == "SUCCEEDED", client.get("/source/alice/gdp/info").get_json()
    assert status["stats"]["count_of_rows"] == 6
    assert status["stats"]["dataset_name"] == "gdp"
    assert set(status["stats"]) >= {"count_of_rows", "bytes", "hash", "dataset_name"}
    assert any("running 8 steps" in line for line in status["logs"])

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

    status = wait_for(_status(client))
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

    assert wait_for(_status(client))["state"] == "FAILED"
    error_log = client.get("/source/alice/gdp/info").get_json()["error_log"]
    assert error_log == [
        f"the data package {example_data}nothing/datapackage.json cannot be read: HTTP 404"
    ]


def test_a_spec_that_cannot_be_planned_is_invalid(runner_app, keypair, example_data):
    client = runner_app.test_client()
    spec = example_spec(example_data)
    spec["processing"][0]["input"] = "nonexistent"
    upload(client, spec, keypair.token("alice"))

    assert wait_for(_status(client))["state"] == "INVALID"
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
    registry = runner.registry
    newest = registry.revision("alice", "gdp", "latest")
    older = registry.revision("alice", "gdp", 1)
    from specstore.registry import RevisionRef

    runner.dispatch(RevisionRef("alice", "gdp", 2, newest.revision.id))
    runner.dispatch(RevisionRef("alice", "gdp", 1, older.revision.id))
    status = wait_for(_status(runner_app.test_client()))
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
        status = wait_for(_status(client, dataset))
        assert status["state"] == "SUCCEEDED", (dataset, status)
        assert status["stats"]["count_of_rows"] == 6


class _SlowFiles(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(30)

    def log_message(self, *args):
        pass


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
        status = wait_for(_status(client), timeout=60)
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
    assert wait_for(_status(client, "one"))["state"] == "SUCCEEDED"
    assert wait_for(_status(client, "two"))["state"] == "SUCCEEDED"
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
        status = wait_for(_status(client, "prices"))

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
    status = wait_for(_status(client, "info"))
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
        status = wait_for(_status(client, "years"))
    assert status["state"] == "FAILED"
    assert status["errors"] == [
        "resource years, data row 2, field 'year': a text of 4 characters is not a valid integer"
    ]
    # Nothing of the failed run is published.
    assert not (tmp_path / "output" / "alice" / "years" / "datapackage").exists()
