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
