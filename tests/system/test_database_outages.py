"""A PostgreSQL outage or restart is a 503, not a 500, and the service recovers by itself."""

from __future__ import annotations

import pytest

from specstore import create_app
from specstore.config import configure
from specstore.store import database as store_database
from specstore.store.database import Database
from tests.support.api import make_spec, upload
from tests.support.postgres import PostgresServer


def test_a_database_outage_is_503_and_the_service_recovers(postgres_app, keypair):
    server, client = postgres_app
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200

    server.stop()
    for response in (
        client.get("/source/alice/gdp/status"),
        upload(client, make_spec(), keypair.token("alice")),
        client.post("/source/update?token=h", json={"pipeline_id": "alice/gdp", "event": "start"}),
    ):
        assert response.status_code == 503
        assert response.get_json() == {
            "success": False,
            "id": None,
            "errors": ["the database is unavailable, try again shortly"],
            "error": {"status": 503, "message": "the database is unavailable, try again shortly"},
        }

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["database"] == "unavailable"
    assert client.get("/healthz").status_code == 200

    server.restart()
    assert client.get("/readyz").status_code == 200
    status = client.get("/source/alice/gdp/status")
    assert status.status_code == 200
    assert status.get_json()["state"] == "LOADED"
    assert upload(client, make_spec(), keypair.token("alice")).get_json()["revision"] == 2


def test_reads_right_after_a_restart_retry_on_a_new_connection(postgres_app, keypair, monkeypatch):
    server, client = postgres_app
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    assert client.get("/source/alice/gdp/status").status_code == 200
    # No connection is idle long enough to be pinged: the read finds its connection
    # dead, and runs again on a new one.
    monkeypatch.setattr(store_database, "IDLE_PING_SECONDS", 3600.0)
    bounce(server)
    status = client.get("/source/alice/gdp/status")
    assert status.status_code == 200
    assert status.get_json()["state"] == "LOADED"
    listing = client.get("/source/alice")
    assert listing.status_code == 200
    assert listing.get_json()["total"] == 1


def test_writes_after_a_restart_go_through_once_the_connection_was_idle(
    postgres_app, keypair, monkeypatch
):
    server, client = postgres_app
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    monkeypatch.setattr(store_database, "IDLE_PING_SECONDS", 0.0)
    bounce(server)
    again = upload(client, make_spec(), keypair.token("alice"))
    assert again.status_code == 200
    assert again.get_json()["revision"] == 2
    event = client.post(
        "/source/update?token=h", json={"pipeline_id": "alice/gdp", "event": "start"}
    )
    assert event.status_code == 200
    assert event.get_json()["state"] == "RUNNING"


def test_a_write_on_a_connection_in_constant_use_fails_once_then_succeeds(
    postgres_app, keypair, monkeypatch
):
    """The price of not pinging busy connections: the first write after a restart
    that lands on one is a 503 (nothing stored), and the next one succeeds."""
    server, client = postgres_app
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    monkeypatch.setattr(store_database, "IDLE_PING_SECONDS", 3600.0)
    bounce(server)
    failed = upload(client, make_spec(), keypair.token("alice"))
    assert failed.status_code == 503
    assert failed.get_json()["errors"] == ["the database is unavailable, try again shortly"]
    retried = upload(client, make_spec(), keypair.token("alice"))
    assert retried.status_code == 200
    assert retried.get_json()["revision"] == 2


@pytest.fixture
def postgres_app(keypair):
    """An app on a PostgreSQL server of its own, which the test may restart."""
    server = PostgresServer()
    server.start()
    url = server.create_database("restarts")
    Database(url).upgrade()
    app = create_app(
        configure(
            {},
            database_url=url,
            auth_public_key=keypair.public_pem,
            hook_token="h",
            runner_workers=0,
        )
    )
    yield server, app.test_client()
    server.destroy()


def bounce(server: PostgresServer) -> None:
    """Stop and start the server: every connection specstore holds is closed under it."""
    server.stop()
    server.restart()
