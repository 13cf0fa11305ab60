"""A locked database: 503 within seconds, then the service recovers."""

from __future__ import annotations

import sqlite3
import time

from specstore.store.database import Database
from tests.support.api import upload
from tests.support.pipelines import (
    example_spec,
)


def test_a_locked_sqlite_database_is_503_within_seconds_then_recovers(make_app, keypair, tmp_path):
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    Database(url).upgrade()
    app = make_app(database_url=url)
    client = app.test_client()
    assert (
        upload(client, example_spec("http://files.test/"), keypair.token("alice")).status_code
        == 200
    )

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        response = upload(client, example_spec("http://files.test/"), keypair.token("alice"))
        waited = time.monotonic() - started
        assert response.status_code == 503
        assert response.get_json()["errors"] == ["the database is unavailable, try again shortly"]
        assert waited < 15
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    response = upload(client, example_spec("http://files.test/"), keypair.token("alice"))
    assert response.status_code == 200
    assert response.get_json()["revision"] == 2
