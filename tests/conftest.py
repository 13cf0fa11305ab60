"""Fixtures of every kind of test: a fresh app on SQLite and on a real PostgreSQL, real
RS256 keys, the example data package served on loopback.

Every test that takes ``app`` or ``client`` runs once per database backend.
The schema is migrated once per backend with the real Alembic migrations and
the tables are emptied after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from specstore import create_app
from specstore.config import configure
from specstore.store.database import Database
from tests.support.api import HOOK_SECRET, empty_tables
from tests.support.net import StaticFiles
from tests.support.pipelines import EXAMPLE_DATA
from tests.support.postgres import PostgresServer, PostgresUnavailable
from tests.support.receiver import ANNOUNCE_SECRET, Receiver
from tests.support.tokens import KeyPair

TESTS = Path(__file__).parent
POSTGRES = pytest.mark.postgres
KINDS = ("unit", "api", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with its kind, the folder it is in (``-m unit``, ``-m "not
    system"``), and ``postgres`` when it needs the PostgreSQL server (``make check`` runs
    what needs neither that server nor the system's processes)."""
    for item in items:
        kind = item.path.relative_to(TESTS).parts[0]
        if kind not in KINDS:
            raise pytest.UsageError(
                f"{item.nodeid}: a test goes in tests/unit, tests/api or tests/system"
            )
        item.add_marker(kind)
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(POSTGRES)


@pytest.fixture(scope="session")
def example_data() -> Iterator[str]:
    """examples/datapackage served over HTTP on loopback: the base URL."""
    with StaticFiles(str(EXAMPLE_DATA)) as served:
        yield served.url


@pytest.fixture(scope="session")
def keypair() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture(scope="session")
def other_keypair() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except PostgresUnavailable as exc:
        pytest.fail(f"the test PostgreSQL server could not be started: {exc}", pytrace=False)
    yield server
    server.destroy()


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=POSTGRES)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/specstore.db"
    else:
        url = request.getfixturevalue("postgres_server").create_database("specstore_test")
    database = Database(url)
    database.upgrade()
    database.dispose()
    return url


@pytest.fixture
def settings_for(database_url: str, keypair: KeyPair, tmp_path: Any):
    def settings(**overrides: Any):
        values = {
            "database_url": database_url,
            "auth_public_key": keypair.public_pem,
            "hook_secret": HOOK_SECRET,
            "output_dir": str(tmp_path / "output"),
            "data_dir": str(tmp_path / "data"),
            # The tests' data servers are on loopback: allowed, as an operator would.
            "input_address_allow": ("127.0.0.0/8",),
            "runner_workers": 0,
            # Counted where a test is about it (test_hostile.py, test_tenants.py in tests/api/);
            # the others upload freely, many scheduled datasets of one owner among them.
            "upload_rate_limit": None,
            "spec_bytes_limit": None,
            "schedules_per_owner": 0,
        }
        values.update(overrides)
        return configure({}, **values)

    return settings


@pytest.fixture
def make_app(settings_for: Any, database_url: str) -> Iterator[Any]:
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = create_app(settings_for(**overrides))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["specstore.components"].close()
    database = Database(database_url)
    empty_tables(database)
    database.dispose()


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver of announcements on loopback, signed with ANNOUNCE_SECRET."""
    running = Receiver(ANNOUNCE_SECRET)
    yield running
    running.close()
