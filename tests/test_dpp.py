"""specstore handing pipelines to a real datapackage-pipelines 2.2.11.

specstore runs as ``python server.py`` on a loopback port; DPP runs from its own
virtualenv: ``dpp run`` in its folder, its real hooks posting to
``/source/update``, and its dashboard answering ``api/raw`` for ``info``.
"""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml

from specstore.http_client import HttpClient
from specstore.pipelines.dpp import (
    DATASET_FILE,
    LOCK_FILE,
    SPEC_FILE,
    DppDashboard,
    DppPipelines,
)
from specstore.pipelines.planner import REVISION_KEY
from tests.conftest import HOOK_SECRET, hook_credential, stored_revisions, upload
from tests.support.dpp import DppDeployment, DppUnavailable, dpp_venv
from tests.support.net import FakeDashboard, StaticFiles, free_port
from tests.support.pipelines import (
    HANDED_OVER,
    carrying_its_package,
    database_tables,
    example_spec,
    files_under,
    pipelines_for_dpp,
    sqlite_tables,
    wait_for,
    zip_members,
)
from tests.test_npm import npm_spec, run_npm, tarball_files
from tests.test_pipelines import GDP_ROWS, POPULATION_ROWS


@pytest.fixture
def dpp(tmp_path):
    try:
        venv = dpp_venv()
    except DppUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    deployment = DppDeployment(tmp_path / "dpp", venv)
    yield deployment
    deployment.stop()


def _specstore_for(dpp, start_server, keypair, output, **env):
    """``python server.py`` handing pipelines to ``dpp``, its outputs in ``output``; its
    registry a SQLite file beside them unless ``env`` names a DATABASE_URL."""
    settings = {
        "DATABASE_URL": f"sqlite:///{output.parent}/dpp-registry.db",
        "AUTH_PUBLIC_KEY": keypair.public_pem,
        "HOOK_SECRET": HOOK_SECRET,
        "DPP_PIPELINES_DIR": str(dpp.root),
        "OUTPUT_DIR": str(output),
    }
    return start_server(**{**settings, **env})


def _upload(server, keypair, spec):
    return requests.post(
        server.url + "/source/upload",
        json=spec,
        headers={"Auth-Token": keypair.token("alice")},
        timeout=30,
    )


def _get(server, path):
    response = requests.get(server.url + path, timeout=10)
    return response.json()


def dpp_ids(dpp) -> list[str]:
    """The pipeline ids ``dpp`` lists in its folder."""
    listed = subprocess.run(
        [str(dpp.venv / "bin" / "dpp")],
        cwd=dpp.root,
        env=dpp.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [line.split()[1] for line in listed.splitlines() if line.startswith("- ./")]


def test_dpp_finds_each_datasets_pipelines_under_their_ids(dpp):
    """Every dataset's own file, read by specstore's plugin, and an owner's file as older
    specstores wrote it: DPP lists each pipeline once, under ./<owner>/<dataset>."""
    pipeline = {"pipeline": [{"run": "update_package", "parameters": {"name": "x"}}]}
    files = DppPipelines(dpp.root)
    for owner, dataset in (("alice", "gdp"), ("alice", ".hidden"), (".team", "cpi")):
        files.write(owner, dataset, {f"{owner}/{dataset}": {**pipeline, REVISION_KEY: 1}})
    # An owner's file as older specstores wrote it: DPP reads it as it always did.
    (dpp.root / "bob").mkdir()
    (dpp.root / "bob" / SPEC_FILE).write_text(yaml.safe_dump({"old": pipeline, "older": pipeline}))

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

    # Once the owner's next upload has moved it into its datasets' files, the same.
    files.write("bob", "older", {"bob/older": {**pipeline, REVISION_KEY: 2}})
    assert not (dpp.root / "bob" / SPEC_FILE).exists()
    assert sorted(dpp_ids(dpp)) == sorted(ids), dpp_ids(dpp)


def test_pipelines_run_on_a_real_dpp_and_report_back(
    dpp, start_server, postgres_server, keypair, example_data, tmp_path
):
    registry_url = postgres_server.create_database("dpp_registry")
    warehouse = postgres_server.create_database("dpp_warehouse")
    dpp.start_dashboard()
    server = _specstore_for(
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
    response = _upload(server, keypair, spec)
    assert response.status_code == 200, response.text

    # Planned in the background (the spec does not carry its data package), then pushed:
    # the pipeline file is there, and the revision is REGISTERED.
    handed = wait_for(lambda: _get(server, "/source/alice/gdp/status"), states=HANDED_OVER)
    assert handed["state"] == "REGISTERED"
    written = pipelines_for_dpp(dpp.root)
    assert list(written) == ["gdp"]
    credential = hook_credential("alice", "gdp", 1)
    assert written["gdp"]["hooks"] == [
        f"http://127.0.0.1:{server.port}/source/update?dataset=alice/gdp&revision=1"
        f"&token={credential}"
    ]

    # DPP does not know the pipeline yet: info answers from specstore's records.
    info = _get(server, "/source/alice/gdp/info")
    assert info["state"] == "REGISTERED" and info["trigger"] == "upload"

    # Written the way every PostgreSQL host hands it out (SQLAlchemy alone would pick
    # psycopg 3, which DPP's virtualenv does not have): specstore's processor reads it
    # with psycopg2.
    assert warehouse.startswith("postgresql://")
    ran = dpp.run("alice/gdp", ENGINE_WAREHOUSE=warehouse)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    status = wait_for(lambda: _get(server, "/source/alice/gdp/status"), timeout=30)
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
    info = _get(server, "/source/alice/gdp/info")
    assert info["id"] == "./alice/gdp"
    assert info["state"] == "SUCCEEDED"
    assert info["trigger"] == "upload" and info["dpp_trigger"] == "manual"
    assert info["cache_hash"]
    assert info["dirty"] is False
    assert info["last_success"] >= info["started"]
    assert "load" in info["reason"]
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
    _upload(server, keypair, broken).raise_for_status()
    wait_for(lambda: _get(server, "/source/alice/broken/status"), states=HANDED_OVER)
    assert sorted(pipelines_for_dpp(dpp.root)) == [
        "broken",
        "gdp",
    ]
    dpp.run("alice/broken")
    status = wait_for(lambda: _get(server, "/source/alice/broken/status"), timeout=30)
    assert status["state"] == "FAILED"
    # The reason, as the embedded runner gives it: no traceback, no processor name.
    info = _get(server, "/source/alice/broken/info")
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
    server = _specstore_for(dpp, start_server, keypair, dpp_out, DPP_URL=dpp.dashboard_url)
    _upload(server, keypair, example_spec(example_data)).raise_for_status()
    wait_for(lambda: _get(server, "/source/alice/gdp/status"), states=HANDED_OVER)
    assert dpp.run("alice/gdp").returncode == 0
    on_dpp = wait_for(lambda: _get(server, "/source/alice/gdp/status"), timeout=30)

    # Embedded
    embedded_out = tmp_path / "embedded-output"
    app = make_app(runner_workers=1, output_dir=str(embedded_out))
    client = app.test_client()
    upload(client, example_spec(example_data), keypair.token("alice"))
    embedded = wait_for(lambda: client.get("/source/alice/gdp/status").get_json())

    assert on_dpp["state"] == embedded["state"] == "SUCCEEDED"
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


def test_concurrent_uploads_of_one_owners_datasets_all_reach_dpp(
    make_app, keypair, example_data, tmp_path
):
    root = tmp_path / "dpp"
    app = make_app(dpp_pipelines_dir=str(root), public_url="http://specstore.test/")
    datasets = [f"set-{index}" for index in range(12)]
    barrier = threading.Barrier(len(datasets) * 2)

    def push(name):
        client = app.test_client()
        barrier.wait()
        return upload(client, carrying_its_package(example_data, name), keypair.token("alice"))

    with ThreadPoolExecutor(len(datasets) * 2) as pool:
        responses = list(pool.map(push, datasets * 2))

    assert {response.status_code for response in responses} == {200}
    written = pipelines_for_dpp(root)
    assert sorted(written) == sorted(datasets)
    for name in datasets:
        assert written[name]["specstore-revision"] == 2, name
        assert written[name]["hooks"] == [
            f"http://specstore.test/source/update?dataset=alice/{name}&revision=2"
            f"&token={hook_credential('alice', name, 2)}"
        ]
    # Revision 2 waits for DPP; revision 1, whichever was written first, never runs.
    assert {(row[2], row[3]) for row in stored_revisions(app)} == {(1, "FAILED"), (2, "REGISTERED")}
    # One file per dataset, and nothing a write left behind (its temporary files).
    assert sorted(
        str(path.relative_to(root / "alice"))
        for path in (root / "alice").rglob("*")
        if path.is_file() and path.name != LOCK_FILE
    ) == [f"{name}/{DATASET_FILE}" for name in sorted(datasets)]


def test_info_answers_from_specstores_records_when_dpp_is_down(
    make_app, keypair, example_data, tmp_path
):
    app = make_app(
        dpp_pipelines_dir=str(tmp_path / "dpp"), dpp_url=f"http://127.0.0.1:{free_port()}/"
    )
    client = app.test_client()
    upload(client, carrying_its_package(example_data), keypair.token("alice"))
    info = client.get("/source/alice/gdp/info")
    assert info.status_code == 200
    body = info.get_json()
    assert body["state"] == "REGISTERED"
    assert body["pipeline"]["hooks"] == [
        "http://127.0.0.1:5000/source/update?dataset=alice/gdp&revision=1&token=***"
    ]
    assert client.get("/source/alice/gdp/status").get_json()["state"] == "REGISTERED"


@pytest.mark.parametrize("note", ["plain", 'a "quoted" \\ backslash, \u00e9 and \u2028'])
def test_info_shows_the_pipeline_dpp_runs_without_server_paths_or_the_hook_token(
    make_app, keypair, example_data, tmp_path, note
):
    """info's pipeline is the one in DPP's file, with every path in the dataset's folder
    relative to it and the hook token replaced, whatever its strings hold: cleaned in
    its JSON text, or decoded when a string holds what JSON escapes."""
    root, output = tmp_path / "dpp", tmp_path / "output"
    client = make_app(dpp_pipelines_dir=str(root), output_dir=str(output)).test_client()
    spec = carrying_its_package(example_data)
    resource = spec["inputs"][0]["parameters"]["descriptor"]["resources"][0]
    dataset = str((output / "alice" / "gdp").resolve())
    resource["schema"] = {
        "fields": [
            {"name": "country", "type": "string", "description": f"{note} {dataset}/notes.txt"},
            {"name": "year", "type": "integer"},
            {"name": "gdp_usd_bn", "type": "number"},
        ]
    }
    assert upload(client, spec, keypair.token("alice")).status_code == 200

    written = json.dumps(pipelines_for_dpp(root)["gdp"])
    credential = hook_credential("alice", "gdp", 1)
    assert "notes.txt" in written and credential in written
    shown = written.replace(f"{dataset}/", "").replace(dataset, ".").replace(credential, "***")
    info = client.get("/source/alice/gdp/info")
    assert info.status_code == 200
    assert info.get_json()["pipeline"] == json.loads(shown)
    assert credential not in info.text
    assert str(tmp_path.resolve()) not in json.dumps(info.get_json()["pipeline"])


def test_info_does_not_wait_again_on_a_dashboard_that_hangs(
    make_app, keypair, example_data, tmp_path
):
    """A dashboard that holds requests past the timeout costs one request that wait: the
    other ``info`` polls answer from specstore's records without asking it."""
    with FakeDashboard() as dashboard:
        dashboard.hang = 4.0  # the timeout is 2 s
        app = make_app(dpp_pipelines_dir=str(tmp_path / "dpp"), dpp_url=dashboard.url)
        client = app.test_client()
        upload(client, carrying_its_package(example_data), keypair.token("alice"))
        for _ in range(5):
            info = client.get("/source/alice/gdp/info")
            assert info.status_code == 200
            assert info.get_json()["state"] == "REGISTERED"
        assert dashboard.asked == 1


def test_the_dashboards_answers_are_kept_a_moment_and_a_silent_one_is_left_alone():
    record = {"id": "./alice/gdp", "state": "SUCCEEDED", "pipeline": {REVISION_KEY: 1}}
    now = [0.0]
    with FakeDashboard() as dashboard:
        dashboard.records["alice/gdp"] = record
        dpp = DppDashboard(
            HttpClient(0.5), dashboard.url, ttl=2.0, retry_after=30.0, clock=lambda: now[0]
        )
        assert dpp.record("alice/gdp", 1)["state"] == "SUCCEEDED"
        assert dpp.record("alice/gdp", 1)["state"] == "SUCCEEDED"
        assert dpp.record("alice/gdp", 2) is None  # a record of another revision
        assert dashboard.asked == 1
        # DPP's 404 (a pipeline it has not registered) is an answer, kept too.
        assert dpp.record("alice/new", 1) is None
        assert dpp.record("alice/new", 1) is None
        assert dashboard.asked == 2
        dashboard.records["alice/gdp"] = {**record, "state": "FAILED"}
        now[0] = 2.5
        assert dpp.record("alice/gdp", 1)["state"] == "FAILED"
        assert dashboard.asked == 3
        # One record not answered in time: not asked for again for 30 s; the others are.
        dashboard.slow["alice/gdp"] = 1.0
        dashboard.records["alice/other"] = {**record, "id": "./alice/other"}
        now[0] = 5.0
        assert dpp.record("alice/gdp", 1) is None
        assert dashboard.asked == 4
        now[0] = 30.0
        assert dpp.record("alice/gdp", 1) is None
        assert dashboard.asked == 4
        assert dpp.record("alice/other", 1)["state"] == "SUCCEEDED"
        assert dashboard.asked == 5
        del dashboard.slow["alice/gdp"]
        now[0] = 35.5
        assert dpp.record("alice/gdp", 1)["state"] == "FAILED"
        assert dashboard.asked == 6
        # A dashboard that hangs for every record: after three in a row, none is asked
        # for for 30 s.
        dashboard.hang = 1.0
        now[0] = 40.0
        for name in ("one", "two", "three"):
            assert dpp.record(f"alice/{name}", 1) is None
        assert dashboard.asked == 9
        assert dpp.record("alice/four", 1) is None
        assert dpp.record("alice/gdp", 1) is None
        assert dashboard.asked == 9
        dashboard.hang = 0.0
        now[0] = 70.5
        assert dpp.record("alice/four", 1) is None  # DPP's 404: an answer
        assert dashboard.asked == 10


def test_a_dashboard_that_does_not_answer_at_all_is_left_alone_at_once(caplog):
    dpp = DppDashboard(HttpClient(0.5), f"http://127.0.0.1:{free_port()}/", retry_after=30.0)
    with caplog.at_level("WARNING", logger="specstore.pipelines.dpp"):
        assert dpp.record("alice/gdp", 1) is None
    assert "DPP's dashboard does not answer: any record not asked for for 30 s" in caplog.text


def test_dpp_publishes_the_very_npm_package_the_embedded_runner_builds(
    dpp, start_server, make_app, keypair, example_data, tmp_path, npm_registry, npm_token
):
    npm_env = {"NPM_LOCAL_REGISTRY": npm_registry.url, "NPM_LOCAL_TOKEN": npm_token}
    spec = npm_spec(example_data)

    # DPP, running specstore's processor from its own virtualenv.
    dpp_out = tmp_path / "dpp-output"
    server = _specstore_for(dpp, start_server, keypair, dpp_out, **npm_env)
    _upload(server, keypair, spec).raise_for_status()
    wait_for(lambda: _get(server, "/source/alice/gdp/status"), states=HANDED_OVER)
    written = pipelines_for_dpp(dpp.root)
    assert written["gdp"]["pipeline"][-2]["run"] == "specstore.npm_publish"
    assert npm_token not in (dpp.root / "alice" / "gdp" / DATASET_FILE).read_text()
    ran = dpp.run("alice/gdp", **npm_env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    on_dpp = wait_for(lambda: _get(server, "/source/alice/gdp/status"), timeout=30)
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


def test_data_that_does_not_fit_its_schema_fails_on_dpp_as_on_the_embedded_runner(
    dpp, start_server, keypair, tmp_path
):
    served = tmp_path / "served"
    served.mkdir()
    (served / "years.csv").write_text("country,year\nFrance,2019\nItaly,19x9\n")
    with StaticFiles(str(served)) as files:
        server = _specstore_for(dpp, start_server, keypair, tmp_path / "output")
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
        _upload(server, keypair, spec).raise_for_status()
        assert dpp.run("alice/years").returncode == 1
        status = wait_for(lambda: _get(server, "/source/alice/years/status"), timeout=30)
    assert status["state"] == "FAILED"
    assert status["errors"] == [
        "resource years, data row 2, field 'year': a text of 4 characters is not a valid integer"
    ]
    assert not (tmp_path / "output" / "alice" / "years" / "years.sqlite").exists()
