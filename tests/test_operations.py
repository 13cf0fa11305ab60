"""Liveness, readiness, request logs, and `specstore status` against a running server."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from specstore.db import Database
from specstore.operations import _new_request_id
from tests.conftest import empty_tables, hook_credential, make_spec, post_event, upload
from tests.support.net import FakeAuthService, free_port


def test_healthz_checks_nothing_but_the_process(make_app):
    app = make_app(database_url="sqlite:////nonexistent/folder/specstore.db")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_each_dependency(make_app):
    response = make_app().test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "auth": "ok", "dpp": "off"}


def test_readyz_is_503_only_when_the_database_is_down(make_app):
    app = make_app(database_url="sqlite:////nonexistent/folder/specstore.db")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
    assert response.get_json()["database"] == "unavailable"


def test_readyz_reports_a_missing_auth_key_and_dpp_as_degraded(make_app, keypair, tmp_path):
    app = make_app(
        auth_public_key=None,
        auth_server=f"127.0.0.1:{free_port()}",
        dpp_pipelines_dir=str(tmp_path / "dpp"),
        dpp_url=f"http://127.0.0.1:{free_port()}/",
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "database": "ok",
        "auth": "degraded",
        "dpp": "degraded",
    }
    with FakeAuthService(keypair.public_pem) as auth:
        app = make_app(auth_public_key=None, auth_server=auth.host)
        client = app.test_client()
        assert client.get("/readyz").get_json()["auth"] == "degraded"  # not fetched yet
        assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
        assert client.get("/readyz").get_json()["auth"] == "ok"
    assert auth.requests == 1  # readiness never fetches the key


def test_readyz_says_dpp_is_behind_when_a_revision_waits_too_long(make_app, keypair, tmp_path):
    from tests.support.pipelines import carrying_its_package

    app = make_app(dpp_pipelines_dir=str(tmp_path / "dpp"), dpp_wait_alert=1.0)
    client = app.test_client()
    assert client.get("/readyz").get_json()["dpp"] == "ok"
    spec = carrying_its_package("http://files.test/")
    assert upload(client, spec, keypair.token("alice")).status_code == 200
    assert client.get("/source/alice/gdp/status").get_json()["state"] == "REGISTERED"
    assert client.get("/readyz").get_json()["dpp"] == "ok"
    time.sleep(1.5)
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.get_json()["dpp"] == "degraded"


def _access_lines(caplog):
    return [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "specstore.access"
    ]


def test_one_json_log_line_per_request_with_a_request_id(client, keypair, caplog):
    caplog.set_level(logging.INFO, logger="specstore.access")
    token = keypair.token("alice")
    upload(client, make_spec(), token)
    response = client.get("/source/alice/gdp/status", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"

    third = client.get("/source/alice/gdp/status")

    lines = _access_lines(caplog)
    assert len(lines) == 3
    first, second, last = lines
    assert first["method"] == "POST" and first["route"] == "/source/upload"
    assert first["status"] == 200 and first["duration_ms"] >= 0
    # Made up when the client sends none: 32 hex digits, one per request, sent back too.
    made_up = [first["request_id"], last["request_id"]]
    assert all(re.fullmatch("[0-9a-f]{32}", made) for made in made_up)
    assert made_up[0] != made_up[1] and third.headers["X-Request-ID"] == made_up[1]
    assert second == {
        "request_id": "abc-123",
        "method": "GET",
        "route": "/source/<owner:owner_id>/<dataset>/status",
        "path": "/source/alice/gdp/status",
        "status": 200,
        "duration_ms": second["duration_ms"],
    }


def test_workers_forked_from_one_process_make_up_different_request_ids():
    # gunicorn forks its workers: each must make up its own ids, not the same sequence.
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writable, _new_request_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    made_in_child = os.read(readable, 64).decode()
    os.close(readable)
    os.close(writable)
    assert re.fullmatch("[0-9a-f]{32}", made_in_child)
    assert made_in_child != _new_request_id()


def test_tokens_never_reach_the_logs(client, keypair, caplog):
    caplog.set_level(logging.DEBUG)
    token = keypair.token("alice")
    client.post("/source/upload", json=make_spec(), query_string={"jwt": token})
    client.post("/source/upload", json=make_spec(), headers={"Auth-Token": token + "x"})
    post_event(client, {"pipeline_id": "alice/gdp", "event": "start"})
    credential = hook_credential("alice", "gdp", 1)
    post_event(client, {"pipeline_id": "alice/gdp", "event": "start"}, token="wrong-" + credential)
    text = caplog.text
    assert len(_access_lines(caplog)) == 4
    assert token not in text and credential not in text


def test_status_command_asks_a_running_server(start_server, tmp_path):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/s.db", RUNNER_WORKERS="0")
    token = server.cli("token", "alice")
    requests.post(
        server.url + "/source/upload", json=make_spec(), headers={"Auth-Token": token}, timeout=10
    ).raise_for_status()
    command = [sys.executable, "-m", "specstore", "status", "alice/gdp", "--url", server.url]
    found = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["state"] == "LOADED"

    command[4] = "alice/nothing"
    missing = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["success"] is False

    command[5:] = ["--url", f"http://127.0.0.1:{free_port()}"]
    down = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert down.returncode == 1
    assert "cannot be reached" in down.stderr


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


STATUS_ROUTE = "/source/<owner:owner_id>/<dataset>/status"


def _requests_of(samples, route, status="200", method="GET"):
    labels = (("method", method), ("route", route), ("status", status))
    return samples.get(("specstore_http_requests_total", labels), 0.0)


def test_metrics_count_requests_uploads_events_and_revisions(client, keypair):
    before = _samples(client.get("/metrics").get_data(as_text=True))
    upload(client, make_spec(), keypair.token("alice"))
    upload(client, make_spec(), None)
    post_event(client, {"pipeline_id": "alice/gdp", "event": "start"})
    for _ in range(3):
        client.get("/source/alice/gdp/status")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    after = _samples(response.get_data(as_text=True))

    def grew(name, labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert _requests_of(after, STATUS_ROUTE) - _requests_of(before, STATUS_ROUTE) == 3
    assert grew("specstore_uploads_total", {"status": "200"}) == 1
    assert grew("specstore_uploads_total", {"status": "401"}) == 1
    assert grew("specstore_events_total", {"event": "start"}) == 1
    latency = {"method": "GET", "route": STATUS_ROUTE}
    assert grew("specstore_http_request_duration_seconds_count", latency) == 3
    assert after[("specstore_revisions", (("state", "RUNNING"),))] == 1
    assert after[("specstore_revisions", (("state", "LOADED"),))] == 0


def test_made_up_methods_are_counted_together(client):
    before = _samples(client.get("/metrics").get_data(as_text=True))
    for method in ("BREW", "WHEN", "SPAM"):
        response = client.open("/source/alice/gdp/status", method=method)
        assert response.status_code == 405
        assert response.get_json()["success"] is False
    after = _samples(client.get("/metrics").get_data(as_text=True))
    # No route matched a method it does not take: counted as "(unknown)".
    assert _requests_of(after, "(unknown)", "405", "other") == 3 + _requests_of(
        before, "(unknown)", "405", "other"
    )
    assert not any(
        dict(labels).get("method") in ("BREW", "WHEN", "SPAM") for _name, labels in after
    )


def test_metrics_add_up_every_gunicorn_worker(tmp_path, database_url, keypair):
    from tests.support.server import Gunicorn, server_env

    server = Gunicorn(
        server_env(
            DATABASE_URL=database_url,
            AUTH_PUBLIC_KEY=keypair.public_pem,
            RUNNER_WORKERS="0",
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        ),
        tmp_path,
        workers=4,
    )
    try:
        requests.post(
            server.url + "/source/upload",
            json=make_spec(),
            headers={"Auth-Token": keypair.token("alice")},
            timeout=10,
        ).raise_for_status()
        session = requests.Session()
        for _ in range(40):
            session.get(server.url + "/source/alice/gdp/status", timeout=10)
        scrapes = [
            _samples(requests.get(server.url + "/metrics", timeout=10).text) for _ in range(4)
        ]
    finally:
        server.stop()
        database = Database(database_url)
        empty_tables(database)
        database.dispose()
    assert {_requests_of(samples, STATUS_ROUTE) for samples in scrapes} == {40}
    assert all(s[("specstore_revisions", (("state", "LOADED"),))] == 1 for s in scrapes)


def test_gunicorn_removes_the_metrics_folder_it_made(tmp_path, database_url, keypair):
    from tests.support.server import Gunicorn, server_env

    env = server_env(DATABASE_URL=database_url, RUNNER_WORKERS="0")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    folders = Path(tempfile.gettempdir())
    before = set(folders.glob("specstore-metrics-*"))
    server = Gunicorn(env, tmp_path, workers=1)
    try:
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 200
        made = set(folders.glob("specstore-metrics-*")) - before
        assert len(made) == 1 and any(next(iter(made)).iterdir())
    finally:
        server.stop()
    assert not next(iter(made)).exists()
