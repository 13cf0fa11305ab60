"""Liveness, readiness, request logs, and `specstore status` against a running server."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import requests

from tests.conftest import HOOK_TOKEN, make_spec, post_event, upload
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

    lines = _access_lines(caplog)
    assert len(lines) == 2
    first, second = lines
    assert first["method"] == "POST" and first["route"] == "/source/upload"
    assert first["status"] == 200 and first["duration_ms"] >= 0
    assert len(first["request_id"]) == 32  # made up when the client sends none
    assert second == {
        "request_id": "abc-123",
        "method": "GET",
        "route": "/source/<owner_id>/<dataset>/status",
        "path": "/source/alice/gdp/status",
        "status": 200,
        "duration_ms": second["duration_ms"],
    }


def test_tokens_never_reach_the_logs(client, keypair, caplog):
    caplog.set_level(logging.DEBUG)
    token = keypair.token("alice")
    client.post("/source/upload", json=make_spec(), query_string={"jwt": token})
    client.post("/source/upload", json=make_spec(), headers={"Auth-Token": token + "x"})
    post_event(client, {"pipeline_id": "alice/gdp", "event": "start"})
    post_event(client, {"pipeline_id": "alice/gdp", "event": "start"}, token="wrong-" + HOOK_TOKEN)
    text = caplog.text
    assert len(_access_lines(caplog)) == 4
    assert token not in text and HOOK_TOKEN not in text


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
