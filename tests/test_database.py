"""The schema comes from the migrations, and a database outage is a 503, not a 500."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from specstore import create_app
from specstore.config import configure
from specstore.db import Database
from specstore.models import Base
from tests.conftest import make_spec, upload
from tests.support.postgres import PostgresServer


def test_the_migrations_build_exactly_the_models_schema(database_url):
    database = Database(database_url)
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    database.dispose()
    assert differences == []


def test_the_migrations_go_down_and_up_again(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/m.db")
    database.upgrade()
    database.downgrade("base")
    with database.engine.connect() as connection:
        tables = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type='table' AND name != 'alembic_version'"
        ).all()
    assert tables == []
    database.upgrade()
    database.dispose()


def test_a_database_outage_is_503_and_the_service_recovers(keypair):
    server = PostgresServer()
    server.start()
    try:
        url = server.create_database("outage")
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
        client = app.test_client()
        assert upload(client, make_spec(), keypair.token("alice")).status_code == 200

        server.stop()
        for response in (
            client.get("/source/alice/gdp/status"),
            upload(client, make_spec(), keypair.token("alice")),
            client.post(
                "/source/update?token=h", json={"pipeline_id": "alice/gdp", "event": "start"}
            ),
        ):
            assert response.status_code == 503
            assert response.get_json() == {
                "success": False,
                "id": None,
                "errors": ["the database is unavailable, try again shortly"],
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
    finally:
        server.destroy()
