"""Fixtures of the system tests: specstore as its operators run it (``python server.py``,
gunicorn), real engines and registries; each stopped after its test, and the databases
they were given emptied (the session's PostgreSQL database is shared)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from specstore.config import configure
from specstore.store.database import Database
from tests.support.api import HOOK_SECRET, empty_tables
from tests.support.dpp import DppDeployment, DppUnavailable, dpp_venv
from tests.support.npm_registry import RegistryUnavailable, Verdaccio
from tests.support.s3 import CREDENTIALS, MotoServer
from tests.support.server import Gunicorn, Server, server_env
from tests.support.tokens import KeyPair


def _empty(urls: set[str]) -> None:
    for url in urls:
        database = Database(url)
        # A server that never started may have left no tables to empty.
        with contextlib.suppress(ProgrammingError, OperationalError):
            empty_tables(database)
        database.dispose()


@pytest.fixture
def gunicorn(tmp_path: Any, database_url: str, keypair: KeyPair) -> Iterator[Any]:
    """Start specstore under gunicorn (``workers`` of them, 2 unless asked) on the test's
    database, with the tests' key and hook secret, its outputs under the test's folder and
    no embedded runner or rate limit unless ``env`` says otherwise."""
    servers: list[Gunicorn] = []

    def start(workers: int = 2, **env: str) -> Gunicorn:
        settings = {
            "DATABASE_URL": database_url,
            "AUTH_PUBLIC_KEY": keypair.public_pem,
            "HOOK_SECRET": HOOK_SECRET,
            "OUTPUT_DIR": str(tmp_path / "output"),
            "DATA_DIR": str(tmp_path / "data"),
            "RUNNER_WORKERS": "0",
            "UPLOAD_RATE_LIMIT": "off",
            **env,
        }
        server = Gunicorn(server_env(**settings), tmp_path, workers=workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    _empty({database_url})


@pytest.fixture
def warehouse(postgres_server):
    """A fresh PostgreSQL database for `rdbms` outputs."""
    return postgres_server.create_database(f"warehouse_{next(_databases)}")


@pytest.fixture
def runner_app(make_app, warehouse, tmp_path):
    # ENGINE_<NAME> as PostgreSQL hosts hand it out: postgres://, no driver named.
    plain = warehouse.replace("postgresql://", "postgres://")
    engines = configure({"ENGINE_WAREHOUSE": plain}).engines
    return make_app(runner_workers=2, engines=engines)


_databases = itertools.count()


@pytest.fixture
def dpp(tmp_path):
    try:
        venv = dpp_venv()
    except DppUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    deployment = DppDeployment(tmp_path / "dpp", venv)
    yield deployment
    deployment.stop()


@pytest.fixture
def start_server(tmp_path: Any) -> Iterator[Any]:
    """Start ``python server.py`` with the given environment (nothing else set)."""
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
    _empty(databases)


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


@pytest.fixture
def s3(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A real S3 server (moto's) with the tests' bucket, and the AWS environment that
    reaches it set for this process and the pipeline processes it starts."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    server = MotoServer(tmp_path / "moto.log")
    yield server
    server.stop()
