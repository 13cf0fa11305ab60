"""Liveness, readiness, request logs and metrics, through the test client."""

from __future__ import annotations

import json
import logging
import os
import re
import time

from specstore.web.operations import new_request_id
from tests.support.api import hook_credential, make_spec, post_event, upload
from tests.support.metrics import STATUS_ROUTE, requests_of, samples
from tests.support.net import FakeAuthService, free_port


def test_healthz_checks_nothing_but_the_process(make_app):
    app = make_app(database_url="sqlite:////nonexistent/folder/specstore.db")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_each_dependency(make_app):
    response = make_app().test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "database": "ok",
        "auth": "ok",
        "dpp": "off",
        "announcements": "off",
    }


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
        "announcements": "off",
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
        os.write(writable, new_request_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    made_in_child = os.read(readable, 64).decode()
    os.close(readable)
    os.close(writable)
    assert re.fullmatch("[0-9a-f]{32}", made_in_child)
    assert made_in_child != new_request_id()


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


def test_metrics_count_requests_uploads_events_and_revisions(client, keypair):
    before = samples(client.get("/metrics").get_data(as_text=True))
    upload(client, make_spec(), keypair.token("alice"))
    upload(client, make_spec(), None)
    post_event(client, {"pipeline_id": "alice/gdp", "event": "start"})
    for _ in range(3):
        client.get("/source/alice/gdp/status")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    after = samples(response.get_data(as_text=True))

    def grew(name, labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert requests_of(after, STATUS_ROUTE) - requests_of(before, STATUS_ROUTE) == 3
    assert grew("specstore_uploads_total", {"status": "200"}) == 1
    assert grew("specstore_uploads_total", {"status": "401"}) == 1
    assert grew("specstore_events_total", {"event": "start"}) == 1
    latency = {"method": "GET", "route": STATUS_ROUTE}
    assert grew("specstore_http_request_duration_seconds_count", latency) == 3
    assert after[("specstore_revisions", (("state", "RUNNING"),))] == 1
    assert after[("specstore_revisions", (("state", "LOADED"),))] == 0


def test_made_up_methods_are_counted_together(client):
    before = samples(client.get("/metrics").get_data(as_text=True))
    for method in ("BREW", "WHEN", "SPAM"):
        response = client.open("/source/alice/gdp/status", method=method)
        assert response.status_code == 405
        assert response.get_json()["success"] is False
    after = samples(client.get("/metrics").get_data(as_text=True))
    # No route matched a method it does not take: counted as "(unknown)".
    assert requests_of(after, "(unknown)", "405", "other") == 3 + requests_of(
        before, "(unknown)", "405", "other"
    )
    assert not any(
        dict(labels).get("method") in ("BREW", "WHEN", "SPAM") for _name, labels in after
    )
