"""specstore handing pipelines to a real datapackage-pipelines 2.2.11.

specstore runs as ``python server.py`` on a loopback port; DPP runs from its own
virtualenv: ``dpp run`` in its folder, its real hooks posting to
``/source/update``, and its dashboard answering ``api/raw`` for ``info``.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import requests
import yaml

from specstore.pipelines.dpp import DATASET_FILE, DppPipelines
from specstore.pipelines.planner import REVISION_KEY
from tests.support.api import hook_credential, upload
from tests.support.dpp import dpp_ids, specstore_for
from tests.support.net import StaticFiles
from tests.support.npm import npm_spec, run_npm, tarball_files
from tests.support.pipelines import (
    GDP_ROWS,
    HANDED_OVER,
    POPULATION_ROWS,
    carrying_its_package,
    database_tables,
    example_spec,
    files_under,
    pipelines_for_dpp,
    sqlite_tables,
    wait_for,
    zip_members,
)
from tests.support.server import get_json, post_spec


def test_dpp_finds_each_datasets_pipelines_under_their_ids(dpp):
    """Every dataset's own file, read by specstore's plugin: DPP lists each pipeline once,
    under ./<owner>/<dataset>, beside pipelines of DPP's own format."""
    pipeline = {"pipeline": [{"run": "update_package", "parameters": {"name": "x"}}]}
    files = DppPipelines(dpp.root)
    for owner, dataset in (("alice", "gdp"), ("alice", ".hidden"), (".team", "cpi")):
        files.write(owner, dataset, {f"{owner}/{dataset}": {**pipeline, REVISION_KEY: 1}})
    # A file in DPP's own format: DPP reads it as it always did.
    (dpp.root / "bob").mkdir()
    (dpp.root / "bob" / "pipeline-spec.yaml").write_text(
        yaml.safe_dump({"old": pipeline, "older": pipeline})
    )

    ids = dpp_ids(dpp)
    assert sorted(ids) == [
        "./.team/cpi",
        "./alice/.hidden",
        "./alice/gdp",
        "./bob/old",
        "./bob/older",
    ], ids
    ran = dpp.run(".team/cpi")
    assert ran.returncode == 0 and "SUCCESS: ./.team/cpi" in ran.stdout + ran.stderr, ran.stderr


def test_pipelines_run_on_a_real_dpp_and_report_back(
    dpp, start_server, postgres_server, keypair, example_data, tmp_path
):
    registry_url = postgres_server.create_database("dpp_registry")
    warehouse = postgres_server.create_database("dpp_warehouse")
    dpp.start_dashboard()
    server = specstore_for(
        dpp,
        start_server,
        keypair,
        tmp_path / "output",
        DATABASE_URL=registry_url,
        DPP_URL=dpp.dashboard_url,
        ENGINE_WAREHOUSE=warehouse,
    )
    spec = example_spec(example_data)
    spec["outputs"].append({"kind": "rdbms", "parameters": {"engine": "warehouse"}})
    response = post_spec(server, keypair, spec)
    assert response.status_code == 200, response.text

    # Planned in the background (the spec does not carry its data package), then pushed:
    # the pipeline file is there, and the revision is REGISTERED.
    handed = wait_for(lambda: get_json(server, "/source/alice/gdp/status"), states=HANDED_OVER)
    assert handed["state"] == "REGISTERED"
    written = pipelines_for_dpp(dpp.root)
    assert list(written) == ["gdp"]
    credential = hook_credential("alice", "gdp", 1)
    assert written["gdp"]["hooks"] == [
        f"http://127.0.0.1:{server.port}/source/update?dataset=alice/gdp&revision=1"
        f"&token={credential}"
    ]

    # DPP does not know the pipeline yet: info answers from specstore's records.
    info = get_json(server, "/source/alice/gdp/info")
    assert info["state"] == "REGISTERED" and info["trigger"] == "dirty-task"

    # Written the way every PostgreSQL host hands it out (SQLAlchemy alone would pick
    # psycopg 3, which DPP's virtualenv does not have): specstore's processor reads it
    # with psycopg2.
    assert warehouse.startswith("postgresql://")
    ran = dpp.run("alice/gdp", ENGINE_WAREHOUSE=warehouse)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    status = wait_for(lambda: get_json(server, "/source/alice/gdp/status"), timeout=30)
    assert status["state"] == "SUCCEEDED", status
    assert status["stats"]["count_of_rows"] == 6
    assert status["stats"]["dataset_name"] == "gdp"
    assert status["logs"], "DPP's progress event carries the log tail"

    out = tmp_path / "output" / "alice" / "gdp"
    tables = sqlite_tables(out / "gdp.sqlite")
    assert tables["gdp"]["rows"] == GDP_ROWS
    assert tables["population"]["rows"] == POPULATION_ROWS
    assert tables["population"]["columns"] == {
        "country": "TEXT",
        "year": "INTEGER",
        "population": "INTEGER",
    }
    # Every table the dataset's own, named for its owner and dataset.
    in_warehouse = database_tables(warehouse)
    assert sorted(in_warehouse) == ["alice/gdp/gdp", "alice/gdp/population"]
    assert in_warehouse["alice/gdp/population"]["rows"] == POPULATION_ROWS
    assert sorted(zip_members(out / "gdp.zip")) == ["datapackage.json", "gdp.csv", "population.csv"]
    assert sorted(files_under(out / "datapackage")) == [
        "datapackage.json",
        "gdp.csv",
        "population.csv",
    ]

    # info now carries DPP's own record of the run.
    info = get_json(server, "/source/alice/gdp/info")
    assert info["id"] == "./alice/gdp"
    assert info["state"] == "SUCCEEDED"
    assert info["trigger"] == "dirty-task" and info["dpp_trigger"] == "manual"
    assert info["cache_hash"]
    assert info["dirty"] is False
    assert info["last_success"] >= info["started"]
    # One processor ran the plan's steps, and DPP's log names it.
    assert "specstore.flow: resource gdp: fetched" in info["reason"]
    assert info["stats"]["count_of_rows"] == 6
    assert info["pipeline"]["specstore-revision"] == 1
    assert info["pipeline"]["hooks"] == [
        f"http://127.0.0.1:{server.port}/source/update?dataset=alice/gdp&revision=1&token=***"
    ]
    assert info["source"]["meta"]["owner"] == "Alice"
    assert credential not in requests.get(server.url + "/source/alice/gdp/info", timeout=10).text
    # DPP's statistics name where it wrote the package: no server path in what info shows.
    assert str(tmp_path) not in json.dumps(info["stats"]), info["stats"]
    # Nor does DPP's dashboard show the credential, in any of its answers.
    for page in ("api/raw/alice/gdp", "api/pipeline/alice/gdp", "alice/gdp"):
        shown = requests.get(dpp.dashboard_url + page, timeout=10)
        assert shown.status_code == 200 and credential not in shown.text, page
    assert "token=***" in requests.get(dpp.dashboard_url + "api/raw/alice/gdp", timeout=10).text

    # A spec whose data is missing ends FAILED with DPP's error lines.
    broken = example_spec(example_data, dataset="broken")
    broken["inputs"][0]["parameters"]["resource-mapping"]["gdp"] = example_data + "missing.csv"
    post_spec(server, keypair, broken).raise_for_status()
    wait_for(lambda: get_json(server, "/source/alice/broken/status"), states=HANDED_OVER)
    assert sorted(pipelines_for_dpp(dpp.root)) == [
        "broken",
        "gdp",
    ]
    dpp.run("alice/broken")
    status = wait_for(lambda: get_json(server, "/source/alice/broken/status"), timeout=30)
    assert status["state"] == "FAILED"
    # The reason, as the embedded runner gives it: no traceback, no processor name.
    info = get_json(server, "/source/alice/broken/info")
    assert info["error_log"] == [
        f"resource gdp: {example_data}missing.csv cannot be read: HTTP 404"
    ]
    assert "Traceback" not in info["reason"] and 'File "' not in info["reason"]


def test_the_same_spec_gives_the_same_outputs_on_both_engines(
    dpp, start_server, make_app, keypair, example_data, tmp_path
):
    # DPP
    dpp.start_dashboard()
    dpp_out = tmp_path / "dpp-output"
    server = specstore_for(dpp, start_server, keypair, dpp_out, DPP_URL=dpp.dashboard_url)
    post_spec(server, keypair, example_spec(example_data)).raise_for_status()
    wait_for(lambda: get_json(server, "/source/alice/gdp/status"), states=HANDED_OVER)
    assert dpp.run("alice/gdp").returncode == 0
    on_dpp = wait_for(lambda: get_json(server, "/source/alice/gdp/status"), timeout=30)

    # Embedded
    embedded_out = tmp_path / "embedded-output"
    embedded_data = tmp_path / "embedded-data"
    app = make_app(runner_workers=1, output_dir=str(embedded_out), data_dir=str(embedded_data))
    client = app.test_client()
    upload(client, example_spec(example_data), keypair.token("alice"))
    embedded = wait_for(lambda: client.get("/source/alice/gdp/status").get_json())

    assert on_dpp["state"] == embedded["state"] == "SUCCEEDED"
    # The same publication, object for object, byte for byte.
    published = [
        [(o["name"], o["type"], o["format"], o["bytes"], o["hash"]) for o in status["outputs"]]
        for status in (on_dpp, embedded)
    ]
    assert published[0] == published[1]
    assert len(published[0]) == 8
    for output in on_dpp["outputs"]:
        assert requests.get(output["url"], timeout=10).content == (
            client.get(urlsplit(output["url"]).path).data
        )
    descriptor = requests.get(on_dpp["datapackage_url"], timeout=10).json()
    assert [res["hash"] for res in descriptor["resources"]] == [o[4] for o in published[1]]
    assert on_dpp["stats"]["count_of_rows"] == embedded["stats"]["count_of_rows"] == 6
    dpp_files, embedded_files = (out / "alice" / "gdp" for out in (dpp_out, embedded_out))
    assert sqlite_tables(dpp_files / "gdp.sqlite") == sqlite_tables(embedded_files / "gdp.sqlite")
    for name in ("gdp.csv", "population.csv"):
        assert (dpp_files / "datapackage" / name).read_bytes() == (
            embedded_files / "datapackage" / name
        ).read_bytes()
    dpp_zip, embedded_zip = (
        zip_members(files / "gdp.zip") for files in (dpp_files, embedded_files)
    )
    assert sorted(dpp_zip) == sorted(embedded_zip)
    for name in ("gdp.csv", "population.csv"):
        assert dpp_zip[name] == embedded_zip[name]


def test_dpp_publishes_the_very_npm_package_the_embedded_runner_builds(
    dpp, start_server, make_app, keypair, example_data, tmp_path, npm_registry, npm_token
):
    npm_env = {"NPM_LOCAL_REGISTRY": npm_registry.url, "NPM_LOCAL_TOKEN": npm_token}
    spec = npm_spec(example_data)

    # DPP, running specstore's processor from its own virtualenv.
    dpp_out = tmp_path / "dpp-output"
    server = specstore_for(dpp, start_server, keypair, dpp_out, **npm_env)
    post_spec(server, keypair, spec).raise_for_status()
    wait_for(lambda: get_json(server, "/source/alice/gdp/status"), states=HANDED_OVER)
    written = pipelines_for_dpp(dpp.root)
    assert written["gdp"]["pipeline"][-2]["run"] == "specstore.npm_publish"
    assert npm_token not in (dpp.root / "alice" / "gdp" / DATASET_FILE).read_text()
    ran = dpp.run("alice/gdp", **npm_env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    on_dpp = wait_for(lambda: get_json(server, "/source/alice/gdp/status"), timeout=30)
    assert on_dpp["state"] == "SUCCEEDED", on_dpp
    view = run_npm("view", "alice-gdp", "version", "--registry", npm_registry.url, cwd=tmp_path)
    assert view.stdout.strip() == "1.0.0", view.stderr

    # The embedded runner, on the same spec: the same package, byte for byte.
    embedded_out = tmp_path / "embedded-output"
    app = make_app(runner_workers=1, output_dir=str(embedded_out))
    client = app.test_client()
    upload(client, npm_spec(example_data, credentials=None), keypair.token("alice"))
    embedded = wait_for(lambda: client.get("/source/alice/gdp/status").get_json())
    assert embedded["state"] == "SUCCEEDED", embedded
    tarballs = [
        out / "alice" / "gdp" / "npm" / "alice-gdp-1.0.0.tgz" for out in (dpp_out, embedded_out)
    ]
    assert tarball_files(tarballs[0]) == tarball_files(tarballs[1])
    assert tarballs[0].read_bytes() == tarballs[1].read_bytes()


def test_a_revision_dpp_says_nothing_about_ends_failed_with_the_reason(
    make_app, keypair, example_data, tmp_path
):
    """DPP never retries a hook: a revision it handed no event back for is not left waiting."""
    app = make_app(dpp_pipelines_dir=str(tmp_path / "dpp"), dpp_silence_timeout=1.0)
    client = app.test_client()
    upload(client, carrying_its_package(example_data), keypair.token("alice"))
    assert client.get("/source/alice/gdp/status").get_json()["state"] == "REGISTERED"
    status = wait_for(lambda: client.get("/source/alice/gdp/status").get_json(), timeout=30)
    assert status["state"] == "FAILED"
    assert client.get("/source/alice/gdp/info").get_json()["error_log"] == [
        "no event from DPP for 1 s: the run is taken as lost (DPP_SILENCE_TIMEOUT)"
    ]


def test_dates_are_read_on_dpp_as_on_the_embedded_runner(dpp, start_server, keypair, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "days.csv").write_text("day\n2020-01-31\n2021-02-29\n2020-1-5\n")
    with StaticFiles(str(served)) as files:
        server = specstore_for(dpp, start_server, keypair, tmp_path / "output")
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
        post_spec(server, keypair, spec).raise_for_status()
        assert dpp.run("alice/days").returncode == 1
        status = wait_for(lambda: get_json(server, "/source/alice/days/status"), timeout=30)
    assert status["state"] == "FAILED"
    assert status["errors"][1:] == [
        "resource days, data row 2, field 'day': a text of 10 characters is not a valid date"
    ]


def test_data_that_does_not_fit_its_schema_fails_on_dpp_as_on_the_embedded_runner(
    dpp, start_server, keypair, tmp_path
):
    served = tmp_path / "served"
    served.mkdir()
    (served / "years.csv").write_text("country,year\nFrance,2019\nItaly,19x9\n")
    with StaticFiles(str(served)) as files:
        server = specstore_for(dpp, start_server, keypair, tmp_path / "output")
        spec = example_spec(files.url, dataset="years")
        schema = {"fields": [{"name": "country"}, {"name": "year", "type": "integer"}]}
        spec["inputs"][0]["parameters"] = {
            "descriptor": {
                "name": "years",
                "resources": [{"name": "years", "path": "years.csv", "schema": schema}],
            }
        }
        spec["processing"] = []
        spec["outputs"] = [{"kind": "sqlite"}]
        post_spec(server, keypair, spec).raise_for_status()
        assert dpp.run("alice/years").returncode == 1
        status = wait_for(lambda: get_json(server, "/source/alice/years/status"), timeout=30)
    assert status["state"] == "FAILED"
    assert status["errors"][0].startswith(
        "1 value breaks the schema (type-or-format-error: 1); every problem is in the "
        "validation report: "
    )
    assert status["errors"][1:] == [
        "resource years, data row 2, field 'year': a text of 4 characters is not a valid integer"
    ]
    assert not (tmp_path / "output" / "alice" / "years" / "years.sqlite").exists()
    report = requests.get(status["errors"][0].rsplit(" ", 1)[1], timeout=10).json()
    assert report["tables"][0]["errors"][0]["code"] == "type-or-format-error"
