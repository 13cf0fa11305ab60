"""The schema comes from the migrations, down and up again."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from specstore.store.database import Database
from specstore.store.models import Base


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


def test_uploads_stored_by_older_releases_get_the_seeds_trigger(database_url, app, keypair):
    """0010: what an older release stored as ``upload`` reads ``dirty-task``, as the
    original specstore's front ends know it; a scheduled revision stays ``scheduled``."""
    from tests.support.api import database_of, make_spec, upload

    client = app.test_client()
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    database = database_of(app)
    database.downgrade("0009")
    with database.engine.begin() as connection:
        stored = connection.exec_driver_sql("SELECT trigger FROM revisions").scalars().all()
    assert stored == ["upload"]
    database.upgrade()
    assert client.get("/source/alice/gdp/status").get_json()["trigger"] == "dirty-task"
