"""Fixtures: a fresh app on SQLite and on a real PostgreSQL, real RS256 keys.

Every test that takes ``app`` or ``client`` runs once per database backend.
The schema is migrated once per backend with the real Alembic migrations and
the tables are emptied after each test.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from specstore import create_app
from specstore.config import configure
from specstore.db import Database
from specstore.hooks import credential
from specstore.models import Dataset, Revision, Setting
from tests.support.net import StaticFiles
from tests.support.npm_registry import RegistryUnavailable, Verdaccio
from tests.support.pipelines import EXAMPLE_DATA
from tests.support.postgres import PostgresServer, PostgresUnavailable
from tests.support.server import Server, server_env
from tests.support.tokens import KeyPair

# The key the tests' servers derive each revision's hook credential from, and the single
# token of older releases, which the tests about the upgrade set.
HOOK_SECRET = "test-hook-secret"
HOOK_TOKEN = "test-hook-token"

SPEC: dict[str, Any] = {
    "meta": {
        "version": 1,
        "ownerid": "alice",
        "owner": "Alice",
        "dataset": "gdp",
        "findability": "published",
    },
    "inputs": [
        {
            "kind": "datapackage",
            "url": "http://data.example/gdp/datapackage.json",
            "parameters": {
                "resource-mapping": {"gdp": "http://data.example/gdp/gdp.csv"},
                "descriptor": {"name": "gdp"},
            },
        }
    ],
    "processing": [
        {"input": "gdp", "output": "gdp-clean", "tabulator": {"headers": 2, "sheet": 1}}
    ],
    "outputs": [{"kind": "sqlite"}, {"kind": "zip", "parameters": {"out-file": "gdp.zip"}}],
    "schedule": "every 1d",
}


def make_spec(ownerid: str = "alice", dataset: str = "gdp", **meta: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["meta"].update(ownerid=ownerid, dataset=dataset, **meta)
    return spec


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


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/specstore.db"
    else:
        url = request.getfixturevalue("postgres_server").create_database("specstore_test")
    database = Database(url)
    database.upgrade()
    database.dispose()
    return url


def empty_tables(database: Database) -> None:
    with database.transaction(write=True) as session:
        for model in (Revision, Dataset, Setting):
            session.execute(delete(model))


@pytest.fixture
def settings_for(database_url: str, keypair: KeyPair, tmp_path: Any):
    def settings(**overrides: Any):
        values = {
            "database_url": database_url,
            "auth_public_key": keypair.public_pem,
            "hook_secret": HOOK_SECRET,
            "output_dir": str(tmp_path / "output"),
            # The tests' data servers are on loopback: allowed, as an operator would.
            "input_address_allow": ("127.0.0.0/8",),
            "runner_workers": 0,
            # Counted where a test is about it (test_hostile.py, test_tenants.py); the others
            # upload freely, many scheduled datasets of one owner among them.
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
def start_server(tmp_path: Any) -> Iterator[Any]:
    """Start ``python server.py`` with the given environment; stopped after the test, and
    the databases they were given emptied (the session's PostgreSQL database is shared)."""
    servers: list[Server] = []
    databases: set[str] = set()

    def start(**env: str) -> Server:
        server = Server(server_env(**env), tmp_path)
        servers.append(server)
        if env.get("DATABASE_URL"):
            databases.add(env["DATABASE_URL"])
        return server

    yield start
    for server in servers:
        server.stop()
    for url in databases:
        database = Database(url)
        # A server that never started may have left no tables to empty.
        with contextlib.suppress(ProgrammingError, OperationalError):
            empty_tables(database)
        database.dispose()


def database_of(app: Flask) -> Database:
    return app.extensions["specstore.components"].database


def stored_revisions(app: Flask) -> list[tuple[str, str, int, str]]:
    """Every stored revision as (ownerid, dataset, revision, state), in order."""
    with database_of(app).transaction() as session:
        rows = session.execute(
            select(Dataset.owner_id, Dataset.name, Revision.revision, Revision.state)
            .join(Revision, Revision.dataset_id == Dataset.id)
            .order_by(Dataset.owner_id, Dataset.name, Revision.revision)
        )
        return [tuple(row) for row in rows]


def stored_datasets(app: Flask) -> list[tuple[str, str, int]]:
    with database_of(app).transaction() as session:
        rows = session.execute(
            select(Dataset.owner_id, Dataset.name, Dataset.last_revision).order_by(Dataset.id)
        )
        return [tuple(row) for row in rows]


def upload(
    client: FlaskClient, spec: Any, token: str | None, content_type: str = "application/json"
) -> Any:
    headers = {"Auth-Token": token} if token else {}
    if isinstance(spec, bytes | str):
        return client.post("/source/upload", data=spec, headers=headers, content_type=content_type)
    return client.post("/source/upload", json=spec, headers=headers)


def hook_credential(owner_id: str, dataset: str, revision: int) -> str:
    """The credential the tests' servers give the hooks of that revision."""
    return credential(HOOK_SECRET, owner_id, dataset, revision)


def hook_query(owner_id: str, dataset: str, revision: int) -> dict[str, Any]:
    """What a hook URL of that revision carries: its dataset, its number, its credential."""
    return {
        "dataset": f"{owner_id}/{dataset}",
        "revision": revision,
        "token": hook_credential(owner_id, dataset, revision),
    }


_CREDENTIAL = object()


def post_event(
    client: FlaskClient,
    payload: Any,
    token: Any = _CREDENTIAL,
    revision: int | None = None,
    **query: Any,
):
    """Post ``payload`` as the engine does, to the URL of a hook of revision ``revision``
    (the dataset's newest, unless given) of the dataset the payload names: with that
    revision's credential, unless ``token`` is given (None: none)."""
    pipeline = (
        payload.get("pipeline_id", payload.get("pipeline")) if isinstance(payload, dict) else None
    )
    owner_id, _, dataset = str(pipeline or "").removeprefix("./").partition(":")[0].partition("/")
    if revision is None:
        numbers = [
            row[2] for row in stored_revisions(client.application) if row[:2] == (owner_id, dataset)
        ]
        revision = max(numbers, default=1)
    hook = hook_query(owner_id, dataset, revision)
    if token is not _CREDENTIAL:
        hook.pop("token")
        if token is not None:
            hook["token"] = token
    return client.post("/source/update", json=payload, query_string={**hook, **query})


@pytest.fixture
def npm_registry(tmp_path: Any) -> Iterator[Verdaccio]:
    """A real npm registry (verdaccio) of the test's own, on loopback."""
    server = Verdaccio(tmp_path / "verdaccio")
    try:
        server.start()
    except RegistryUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def npm_token(npm_registry: Verdaccio) -> str:
    """A token of a user of ``npm_registry``, as `npm adduser` gets one."""
    return npm_registry.add_user("specstore")
