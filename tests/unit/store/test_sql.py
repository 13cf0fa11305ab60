"""The store's one seam to its database (specstore.store.sql and .statements): the fast
path answers what SQLAlchemy answers, fails as it fails, and can be turned off; on SQLite
and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from specstore import create_app
from specstore.config import configure
from specstore.store import statements
from specstore.store.models import Dataset
from specstore.store.sql import Reader, labels, takes_the_fast_path
from tests.support.api import database_of, make_spec, post_event, stored_datasets, upload
from tests.support.pipelines import example_spec


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
            lambda reader: (
                reader.connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements")
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
    for view in statements.VIEWS:
        found.append((statements.revision("latest", view), alice))
        found.append((statements.revision("successful", view), alice))
        found.append((statements.revision("number", view), {**alice, "number": 2}))
    for by_owner in (True, False):
        for hidden in (True, False):
            page, count = statements.listing(by_owner, hidden)
            parameters = {"owner_id": "alice", "published": "published", "limit": 50, "offset": 0}
            found += [(page, parameters), (count, parameters)]
    found.append((statements.event_target(False), alice))
    found.append((statements.event_target(True), {**alice, "number": 1}))
    return found


def test_the_hot_statements_answer_what_sqlalchemy_answers(make_app, keypair):
    """On PostgreSQL the hot statements go to the driver's cursor (the fast path): their
    rows are those SQLAlchemy gives (the fast path off), value for value and type for
    type (UTC datetimes, JSON documents)."""
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
        fast, plain = Reader(connection, fast=True), Reader(connection, fast=False)
        for statement, parameters in _hot_statements():
            # Each takes the fast path, or the work was for nothing.
            assert takes_the_fast_path(statement)
            expected = [tuple(row) for row in plain.all(statement, **parameters)]
            assert expected, statement
            rows = [tuple(row) for row in fast.all(statement, **parameters)]
            assert rows == expected
            assert [[type(value) for value in row] for row in rows] == [
                [type(value) for value in row] for row in expected
            ]
            assert tuple(fast.first(statement, **parameters)) == expected[0]
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
    with pytest.raises(IntegrityError) as raised, database.write() as tx:
        tx.send(taken)
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

    with database.write(pipelined=True) as tx:
        tx.send(_new_dataset("bob", "one"))
        (first_id,) = tx.first(_new_dataset("bob", "two", returning=True))
        later = tx.later(_new_dataset("bob", "three", returning=True))
    (third_id,) = later()
    assert third_id > first_id
    assert stored_datasets(app)[1:] == [("bob", "one", 1), ("bob", "two", 1), ("bob", "three", 1)]

    # The refusal of a statement sent with the COMMIT (a unique key taken) is raised as
    # SQLAlchemy raises it, when the block ends; the statements before it are not kept.
    with pytest.raises(IntegrityError) as raised, database.write(pipelined=True) as tx:
        tx.send(_new_dataset("carol", "one"))
        tx.later(_new_dataset("alice", "gdp", returning=True))
    assert "datasets" in str(raised.value.orig)
    with pytest.raises(IntegrityError), database.write(pipelined=True) as tx:
        tx.send(_new_dataset("carol", "one"))
        tx.send(_new_dataset("bob", "one"))

    with pytest.raises(ValueError, match="given up"), database.write(pipelined=True) as tx:
        tx.first(_new_dataset("carol", "one", returning=True))
        raise ValueError("given up")
    assert [owner for owner, *_ in stored_datasets(app)] == ["alice"] + ["bob"] * 3

    # A statement that SQLAlchemy would have to run (its answer unread in pipeline mode)
    # is refused there, never run wrong.
    if database.dialect == "postgresql":
        listed = select(Dataset.name).where(Dataset.name.in_(["one", "two"]))
        with pytest.raises(RuntimeError, match="pipelined"), database.write(pipelined=True) as tx:
            tx.first(listed)

    # And the connections go back to the pool ready for the next transaction.
    with database.write(pipelined=True) as tx:
        tx.send(_new_dataset("carol", "one"))
    assert stored_datasets(app)[-1] == ("carol", "one", 1)


def test_a_statement_the_driver_cannot_take_as_built_is_refused_where_it_is_written():
    """Every statement the store runs is built once and checked then (statements.statement):
    one with a part rendered only at execution (an ``IN`` list) would go back through
    SQLAlchemy's execution on every request, so building it fails, unless it says it
    must (``fast=False``: never in a pipelined transaction)."""

    @statements.statement
    def in_a_list() -> Any:
        return select(Dataset.name).where(Dataset.name.in_(bindparam("names", expanding=True)))

    with pytest.raises(TypeError, match="the driver cannot run it as built"):
        in_a_list()

    @statements.statement(fast=False)
    def in_a_list_on_purpose() -> Any:
        return select(Dataset.name).where(Dataset.name.in_(bindparam("names", expanding=True)))

    assert not takes_the_fast_path(in_a_list_on_purpose())
    # The hot writes all take it (building them checks).
    for built in (
        statements.upsert_dataset("postgresql"),
        statements.insert_revision((), False, False),
        statements.insert_revision(("state", "modified", "pipelines", "queued"), True, False),
        *statements.event_writes("postgresql", ("logs", "modified"), ("modified",)),
        statements.last_revision(),  # an event's 404
    ):
        assert takes_the_fast_path(built), built


def test_with_the_fast_path_off_the_service_answers_the_same(make_app, keypair):
    """DATABASE_FAST_PATH=off (for a SQLAlchemy upgrade): every statement through
    SQLAlchemy's execute, no pipelining; the same answers."""
    assert configure({"DATABASE_FAST_PATH": "off"}).database_fast_path is False
    answers = []
    for fast in (True, False):
        app = make_app(database_fast_path=fast)
        client = app.test_client()
        name = f"fast-{fast}".lower()
        assert upload(client, make_spec(dataset=name), keypair.token("alice")).status_code == 200
        event = {"pipeline_id": f"alice/{name}", "event": "finish", "success": True}
        assert post_event(client, event).status_code == 200
        body = client.get(f"/source/alice/{name}/info").get_json()
        answers.append({key: body[key] for key in ("state", "revision", "success", "error_log")})
    assert (
        answers[0]
        == answers[1]
        == {
            "state": "SUCCEEDED",
            "revision": 1,
            "success": True,
            "error_log": [],
        }
    )
