"""specstore in DPP mode without DPP's processes: the files DPP would read, and info
answered from specstore's records and DPP's dashboard (a fake one, at the HTTP level)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from specstore.http_client import HttpClient
from specstore.pipelines.dpp import DATASET_FILE, LOCK_FILE, DppDashboard
from specstore.pipelines.planner import REVISION_KEY
from tests.support.api import hook_credential, stored_revisions, upload
from tests.support.net import FakeDashboard, free_port
from tests.support.pipelines import (
    carrying_its_package,
    pipelines_for_dpp,
)


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
    shown = shown.replace(str((tmp_path / "data").resolve()), "<data>")
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
