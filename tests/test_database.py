"""The schema comes from the migrations, and a database outage is a 503, not a 500."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.exc import IntegrityError

from specstore import create_app, db
from specstore.config import configure
from specstore.db import (
    Database,
    _driver_statement,
    every,
    execute,
    first,
    first_after_commit,
    labels,
)
from specstore.events import REGISTERED
from specstore.models import Base, Dataset
from specstore.registry import (
    VIEWS,
    Handover,
    _event_target_statement,
    _event_writes,
    _handover_values,
    _insert_revision_statement,
    _last_revision_query,
    _listing_queries,
    _revision_query,
    _upsert_dataset,
    utcnow,
)
from tests.conftest import database_of, make_spec, post_event, stored_datasets, upload
from tests.support.pipelines import example_spec
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


def bounce(server: PostgresServer) -> None:
    """Stop and start the server: every connection specstore holds is closed under it."""
    server.stop()
    server.restart()


def test_reads_right_after_a_restart_retry_on_a_new_connection(postgres_app, keypair, monkeypatch):
    server, client = postgres_app
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    assert client.get("/source/alice/gdp/status").status_code == 200
    # No connection is idle long enough to be pinged: the read finds its connection
    # dead, and runs again on a new one.
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 3600.0)
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
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
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
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 3600.0)
    bounce(server)
    failed = upload(client, make_spec(), keypair.token("alice"))
    assert failed.status_code == 503
    assert failed.get_json()["errors"] == ["the database is unavailable, try again shortly"]
    retried = upload(client, make_spec(), keypair.token("alice"))
    assert retried.status_code == 200
    assert retried.get_json()["revision"] == 2


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgresql_urls_as_hosts_hand_them_out_work(postgres_server, keypair, scheme):
    """``postgresql://`` and ``postgres://`` (no driver named) are served with psycopg 3,
    which prepares the statements a connection runs again and again."""
    url = postgres_server.create_database(f"plain_{scheme}")
    plain = url.replace("postgresql://", f"{scheme}://")
    settings = configure(
        {"DATABASE_URL": plain}, auth_public_key=keypair.public_pem, runner_workers=0
    )
    assert settings.database_url == url.replace("postgresql://", "postgresql+psycopg://")
    app = create_app(settings)
    try:
        app.extensions["specstore.components"].database.upgrade()
        client = app.test_client()
        response = upload(client, example_spec("http://files.test/"), keypair.token("alice"))
        assert response.status_code == 200, response.get_json()
        for _ in range(6):
            assert client.get("/source/alice/gdp/status").get_json()["state"] == "LOADED"
        # The status query, run again and again on one pooled connection, is prepared.
        database = app.extensions["specstore.components"].database
        prepared = database.read(
            lambda connection: (
                connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements")
                .scalars()
                .all()
            )
        )
        assert any("FROM datasets JOIN revisions" in statement for statement in prepared), prepared
    finally:
        app.extensions["specstore.components"].close()


def _hot_statements() -> list[tuple[Any, dict[str, Any]]]:
    """The statements the hot paths run, with parameters that find rows."""
    alice = {"owner_id": "alice", "name": "gdp", "main_id": "alice/gdp"}
    found: list[tuple[Any, dict[str, Any]]] = []
    for view in VIEWS:
        found.append((_revision_query("latest", view), alice))
        found.append((_revision_query("successful", view), alice))
        found.append((_revision_query("number", view), {**alice, "number": 2}))
    for by_owner in (True, False):
        for hidden in (True, False):
            page, count = _listing_queries(by_owner, hidden)
            parameters = {"owner_id": "alice", "published": "published", "limit": 50, "offset": 0}
            found += [(page, parameters), (count, parameters)]
    found.append((_event_target_statement(False), alice))
    found.append((_event_target_statement(True), {**alice, "number": 1}))
    return found


def test_the_hot_statements_answer_what_sqlalchemy_answers(make_app, keypair):
    """On PostgreSQL the hot statements go to the driver's cursor: their rows are those
    SQLAlchemy gives, value for value and type for type (UTC datetimes, JSON documents)."""
    app = make_app()
    client = app.test_client()
    for _ in range(2):
        assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    assert post_event(client, {"pipeline_id": "alice/gdp", "event": "start"}).status_code == 200
    finished = {"pipeline_id": "alice/gdp", "event": "finish", "success": True, "stats": {"n": 1}}
    assert post_event(client, finished).status_code == 200
    database = database_of(app)
    postgresql = database.dialect == "postgresql"
    times = []
    with database.engine.connect() as connection:
        if postgresql:
            # The driver gives datetimes in the session's zone: SQLAlchemy's own
            # conversion must bring them to UTC on both paths.
            connection.exec_driver_sql("SET TIME ZONE 'Asia/Kolkata'")
        for statement, parameters in _hot_statements():
            # On PostgreSQL each is taken by the driver path, or the work was for nothing.
            assert (_driver_statement(statement, connection.dialect) is not None) == postgresql
            expected = [tuple(row) for row in connection.execute(statement, parameters).all()]
            assert expected, statement
            rows = [tuple(row) for row in every(connection, statement, parameters)]
            assert rows == expected
            assert [[type(value) for value in row] for row in rows] == [
                [type(value) for value in row] for row in expected
            ]
            assert tuple(first(connection, statement, parameters)) == expected[0]
            assert labels(statement) == tuple(connection.execute(statement, parameters).keys())
            times += [value for row in rows for value in row if isinstance(value, dt.datetime)]
        assert times and all(value.utcoffset() == dt.timedelta(0) for value in times)
        connection.rollback()


def test_a_driver_error_on_the_hot_path_is_raised_as_sqlalchemy_raises_it(make_app, keypair):
    """A statement the database refuses raises SQLAlchemy's error (a unique key taken:
    IntegrityError, the driver's error inside), and nothing is stored."""
    app = make_app()
    assert upload(app.test_client(), make_spec(), keypair.token("alice")).status_code == 200
    database = database_of(app)
    now = dt.datetime.now(dt.UTC)
    taken = insert(Dataset.__table__).values(
        owner_id="alice",
        name="gdp",
        last_revision=1,
        findability="published",
        created=now,
        modified=now,
    )
    with pytest.raises(IntegrityError) as raised, database.writing() as connection:
        execute(connection, taken, {})
    assert "datasets" in str(raised.value.orig)
    assert stored_datasets(app) == [("alice", "gdp", 1)]


def _new_dataset(owner_id: str, name: str, returning: bool = False) -> Any:
    now = dt.datetime.now(dt.UTC)
    statement = insert(Dataset.__table__).values(
        owner_id=owner_id,
        name=name,
        last_revision=1,
        findability="published",
        created=now,
        modified=now,
    )
    return statement.returning(Dataset.__table__.c.id) if returning else statement


def test_a_pipelined_transaction_stores_all_or_nothing(make_app, keypair):
    """The uploads' and events' transaction (pipelined on PostgreSQL: its statements'
    answers are read late, some after the COMMIT went out) commits whole, or nothing of
    it is kept: when a statement whose answer was not read yet fails, and when the block
    raises."""
    app = make_app()
    assert upload(app.test_client(), make_spec(), keypair.token("alice")).status_code == 200
    database = database_of(app)

    with database.pipelined() as connection:
        execute(connection, _new_dataset("bob", "one"), {})
        (first_id,) = first(connection, _new_dataset("bob", "two", returning=True), {})
        later = first_after_commit(connection, _new_dataset("bob", "three", returning=True), {})
    (third_id,) = later()
    assert third_id > first_id
    assert stored_datasets(app)[1:] == [("bob", "one", 1), ("bob", "two", 1), ("bob", "three", 1)]

    # The refusal of a statement sent with the COMMIT (a unique key taken) is raised as
    # SQLAlchemy raises it, when the block ends; the statements before it are not kept.
    with pytest.raises(IntegrityError) as raised, database.pipelined() as connection:
        execute(connection, _new_dataset("carol", "one"), {})
        first_after_commit(connection, _new_dataset("alice", "gdp", returning=True), {})
    assert "datasets" in str(raised.value.orig)
    with pytest.raises(IntegrityError), database.pipelined() as connection:
        execute(connection, _new_dataset("carol", "one"), {})
        execute(connection, _new_dataset("bob", "one"), {})

    with pytest.raises(ValueError, match="given up"), database.pipelined() as connection:
        first(connection, _new_dataset("carol", "one", returning=True), {})
        raise ValueError("given up")
    assert [owner for owner, *_ in stored_datasets(app)] == ["alice"] + ["bob"] * 3

    # A statement that SQLAlchemy would have to run (its answer unread in pipeline mode)
    # is refused there, never run wrong.
    if database.dialect == "postgresql":
        listed = select(Dataset.name).where(Dataset.name.in_(["one", "two"]))
        with pytest.raises(RuntimeError, match="pipelined"), database.pipelined() as connection:
            first(connection, listed, {})

    # And the connections go back to the pool ready for the next transaction.
    with database.pipelined() as connection:
        execute(connection, _new_dataset("carol", "one"), {})
    assert stored_datasets(app)[-1] == ("carol", "one", 1)


def test_the_hot_writes_go_to_the_driver_on_postgresql():
    """An upload's and an event's statements are compiled once for psycopg: none of them
    has a part rendered only at execution (an ``IN`` list, say), which would send it back
    through SQLAlchemy's execution on every request."""
    dialect = psycopg_dialect()
    handed_over = tuple(_handover_values(Handover(REGISTERED, pipelines={}), utcnow()))
    statements = [
        _upsert_dataset("postgresql"),
        _insert_revision_statement(),
        _insert_revision_statement(handed_over, superseding=True),
        *_event_writes("postgresql", ("logs", "modified"), ("v_modified",)),
        *_event_writes("postgresql", ("state", "started", "modified"), ()),
        _last_revision_query(),  # an event's 404
    ]
    for statement in statements:
        assert _driver_statement(statement, dialect) is not None, statement
