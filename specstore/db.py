"""The database: engine, transactions and migrations.

One :class:`Database` per process owns the SQLAlchemy engine. Every unit of
work runs in one transaction opened by :meth:`Database.transaction`; a write
transaction on SQLite starts with ``BEGIN IMMEDIATE`` so that concurrent
writers queue for the lock instead of failing half-way through.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from datapackage_pipelines_specstore.steps import sqlalchemy_url
from sqlalchemy import create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.selectable import ReturnsRows

from .errors import ServiceUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
# How long a request waits for another writer before it answers 503.
SQLITE_BUSY_TIMEOUT_SECONDS = 5
_WRITE = "specstore_write"
_LAST_USED = "specstore_last_used"
# A pooled PostgreSQL connection unused for this long is checked before it is used.
IDLE_PING_SECONDS = 1.0
T = TypeVar("T")


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if make_url(url).database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        writing = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


def database_url(url: str) -> str:
    """``url`` with the driver named that specstore's own database is served with:
    psycopg 3, which prepares a statement on the server once a connection has run it a
    few times, so PostgreSQL stops parsing and planning the same few queries on every
    request (an explicit ``postgresql+psycopg2://`` is served as it says)."""
    return sqlalchemy_url(url, driver="psycopg")


def make_engine(url: str, autocommit: bool = False) -> Engine:
    """The engine for ``url``.

    On PostgreSQL a pooled connection idle for more than ``IDLE_PING_SECONDS`` is
    pinged before use and replaced if the server closed it (after a restart, say);
    one in constant use is not, which saves a round trip on every request. An
    ``autocommit`` engine's connections send no BEGIN or COMMIT of their own: each
    statement is a transaction (reads), unless the statements sent say otherwise
    (:meth:`Database.pipelined`).
    """
    url = database_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    engine = create_engine(
        url,
        pool_size=5,
        max_overflow=5,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
        # Set once per connection, as its default: never switched back and forth.
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) < IDLE_PING_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            # The pool throws the connection away and checks out another.
            raise DisconnectionError(str(exc)) from exc


class Database:
    """The engine and the way to run a transaction against it."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url = database_url(url)
        self.engine = engine or make_engine(url)
        # On PostgreSQL, reads and the pipelined writes go on connections in autocommit.
        self._autocommit_engine: Engine | None = None
        if engine is None and self.engine.dialect.name == "postgresql":
            self._autocommit_engine = make_engine(url, autocommit=True)
        self._read_engine = self._autocommit_engine or self.engine
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self, write: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error.

        A database that cannot be reached becomes :class:`ServiceUnavailable`.
        """
        factory = self._writer if write else self._reader
        with _unavailable_as_503(), factory() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """One write transaction on a Core connection, no ORM session: the hot write paths
        (uploads, events) send their statements and nothing else. Committed when the block
        ends, rolled back on any error; unreachable is :class:`ServiceUnavailable`."""
        with _unavailable_as_503(), self._write_engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[Connection]:
        """:meth:`writing` in two round trips to PostgreSQL rather than four: the BEGIN
        goes out with the first statement and the COMMIT with the last (psycopg's
        pipeline mode, on a connection in autocommit). A statement waits for its answer
        only when its rows are read (:func:`first`); one whose rows are wanted only
        after the COMMIT is sent with :func:`first_after_commit`, one that answers none
        with :func:`execute`, and an error in either surfaces when the block ends.
        Inside the block, statements go through those functions only (SQLAlchemy's own
        execute reads no results in pipeline mode). Elsewhere, :meth:`writing`."""
        engine = self._autocommit_engine
        if engine is None or engine.dialect.driver != "psycopg":  # psycopg2 has no pipelines
            with self.writing() as connection:
                yield connection
            return
        with _unavailable_as_503(), engine.connect() as connection:
            driver = connection.connection.dbapi_connection
            try:
                with driver.pipeline():
                    driver.execute(b"BEGIN", prepare=False)
                    yield connection
                    driver.execute(b"COMMIT", prepare=False)
            except connection.dialect.loaded_dbapi.Error as exc:
                raise _driver_error(connection, exc, "COMMIT", {}) from exc
            # An error raised in the block leaves the transaction open: the pool rolls
            # it back as the connection goes back.

    def read(self, work: Callable[[Connection], T]) -> T:
        """The result of ``work``, which only reads, on a Core connection (no ORM
        session): the hot read paths select just the columns they answer with.

        On PostgreSQL each statement is its own snapshot, and a connection found
        closed by the server is replaced and ``work`` run once more.
        """
        with _unavailable_as_503():
            try:
                return self._read_once(work)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            return self._read_once(work)

    def _read_once(self, work: Callable[[Connection], T]) -> T:
        with self._read_engine.connect() as connection:
            return work(connection)

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` with the Alembic migrations."""
        self._migrate(command.upgrade, revision)

    def downgrade(self, revision: str) -> None:
        """Take the schema back down to ``revision`` (``base``: no tables at all)."""
        self._migrate(command.downgrade, revision)

    def _migrate(self, step: Callable[[AlembicConfig, str], None], revision: str) -> None:
        with self.engine.begin() as connection:
            config = alembic_config(self.url)
            config.attributes["connection"] = connection
            step(config, revision)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._autocommit_engine is not None:
            self._autocommit_engine.dispose()


@functools.cache
def labels(query: ReturnsRows) -> tuple[str, ...]:
    """The names of ``query``'s columns, in the order of its rows' values."""
    return tuple(query.exported_columns.keys())


@dataclass(frozen=True)
class _DriverStatement:
    """A statement compiled once into the text its driver takes as it is, with what
    SQLAlchemy would do to the values going in and to those of its rows coming out."""

    text: str
    defaults: dict[str, Any]
    bind: tuple[tuple[str, Callable[[Any], Any]], ...]
    result: tuple[tuple[int, Callable[[Any], Any]], ...]


@functools.lru_cache(maxsize=256)
def _driver_statement(statement: ReturnsRows, dialect: Dialect) -> _DriverStatement | None:
    """``statement`` for its driver, or None where SQLAlchemy must run it: a driver whose
    parameters are not named (SQLite's), or a parameter rendered at execution (``IN``
    lists)."""
    if dialect.paramstyle != "pyformat":
        return None
    compiled = statement.compile(dialect=dialect)
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None
    # By the name each parameter is rendered with (one name may stand for two entries).
    processors = {
        compiled.bind_names[parameter]: parameter.type.dialect_impl(dialect).bind_processor(dialect)
        for parameter in compiled.binds.values()
    }
    bind = tuple((name, processor) for name, processor in processors.items() if processor)
    result = tuple(
        (index, processor)
        for index, column in enumerate(statement.exported_columns)
        if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None))
    )
    return _DriverStatement(compiled.string, dict(compiled.params), bind, result)


def first(
    connection: Connection, statement: ReturnsRows, parameters: dict[str, Any]
) -> Sequence[Any] | None:
    """The first row of ``statement`` (None: no row), its values as SQLAlchemy would give
    them, by position (:func:`labels` names them); ``statement`` built once and kept."""
    rows = _run(connection, statement, parameters, rows=1)
    return rows[0] if rows else None


def every(
    connection: Connection, statement: ReturnsRows, parameters: dict[str, Any]
) -> list[Sequence[Any]]:
    """Every row of ``statement``, as :func:`first` gives one."""
    return _run(connection, statement, parameters, rows=None)


def execute(connection: Connection, statement: ReturnsRows, parameters: dict[str, Any]) -> None:
    """Run ``statement``, which answers no rows, as :func:`first` runs one."""
    _run(connection, statement, parameters, rows=0)


def _run(
    connection: Connection, statement: ReturnsRows, parameters: dict[str, Any], rows: int | None
) -> list[Sequence[Any]]:
    """Run ``statement``: no rows (``rows`` 0), the first (1) or all of them (None).

    On PostgreSQL the hot paths skip SQLAlchemy's execution and result machinery (a
    ``status`` query's CPU in the worker goes from about 135 µs to 90; ``bench/layers.py``
    compares the two): the statement, compiled once, goes to the driver's own cursor on
    the same pooled connection (inside its transaction, if one is open), the values that
    SQLAlchemy converts (UTC datetimes, JSON documents) converted by SQLAlchemy's own
    processors, going in and coming out. A driver error is raised as SQLAlchemy raises
    it, the connection invalidated when it is gone, so the callers' retry and 503 work
    unchanged.
    """
    driver = _driver_statement(statement, connection.dialect)
    if driver is None:
        if _in_pipeline_mode(connection.connection.dbapi_connection):
            # SQLAlchemy's execute would read no answer: see Database.pipelined.
            raise RuntimeError(f"not a statement for a pipelined transaction: {statement}")
        result = connection.execute(statement, parameters)
        if rows == 0:
            return []
        if rows is None:
            return list(result.all())
        row = result.first()  # which closes the result: nothing is left pending
        return [] if row is None else [row]
    values = _bound_values(driver, parameters)
    try:
        with connection.connection.dbapi_connection.cursor() as cursor:
            cursor.execute(driver.text, values)
            if rows == 0:
                return []
            fetched = cursor.fetchall() if rows is None else cursor.fetchmany(1)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _driver_error(connection, exc, driver.text, values) from exc
    return _converted(driver, fetched)


def first_after_commit(
    connection: Connection, statement: ReturnsRows, parameters: dict[str, Any]
) -> Callable[[], Sequence[Any] | None]:
    """Send ``statement`` now; what it answers, :func:`first`'s row, when called once the
    transaction has ended. In :meth:`Database.pipelined` the statement travels with the
    COMMIT; elsewhere its row is read at once and kept."""
    driver = _driver_statement(statement, connection.dialect)
    dbapi_connection = connection.connection.dbapi_connection
    if driver is None or not _in_pipeline_mode(dbapi_connection):
        row = first(connection, statement, parameters)
        return lambda: row
    values = _bound_values(driver, parameters)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(driver.text, values)
    except connection.dialect.loaded_dbapi.Error as exc:
        cursor.close()
        raise _driver_error(connection, exc, driver.text, values) from exc

    def row() -> Sequence[Any] | None:
        try:
            with cursor:
                fetched = cursor.fetchmany(1)
        except connection.dialect.loaded_dbapi.Error as exc:
            raise _driver_error(connection, exc, driver.text, values) from exc
        rows = _converted(driver, fetched)
        return rows[0] if rows else None

    return row


def _in_pipeline_mode(dbapi_connection: Any) -> bool:
    pgconn = getattr(dbapi_connection, "pgconn", None)  # psycopg's; psycopg2 has none
    return bool(pgconn is not None and pgconn.pipeline_status)


def _bound_values(driver: _DriverStatement, parameters: dict[str, Any]) -> dict[str, Any]:
    values = {**driver.defaults, **parameters}
    for name, convert in driver.bind:
        values[name] = convert(values[name])
    return values


def _converted(driver: _DriverStatement, fetched: list[Any]) -> list[Sequence[Any]]:
    if not driver.result:
        return fetched
    converted = []
    for row in fetched:
        row = list(row)
        for index, convert in driver.result:
            row[index] = convert(row[index])
        converted.append(row)
    return converted


def _driver_error(
    connection: Connection, exc: Exception, statement: str, values: dict[str, Any]
) -> DBAPIError:
    """The driver's error ``exc`` as SQLAlchemy raises it, the connection invalidated when
    it is gone (so the callers' retry and 503 work unchanged)."""
    dbapi_connection = connection.connection.dbapi_connection
    gone = connection.dialect.is_disconnect(exc, dbapi_connection, None)
    if gone:
        connection.invalidate(exc)
    return DBAPIError.instance(
        statement,
        values,
        exc,
        connection.dialect.loaded_dbapi.Error,
        connection_invalidated=gone,
        dialect=connection.dialect,
    )


@contextlib.contextmanager
def _unavailable_as_503() -> Iterator[None]:
    """A database that cannot be reached becomes :class:`ServiceUnavailable`."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_unavailable(exc):
            raise ServiceUnavailable("the database is unavailable, try again shortly") from exc
        raise


def _is_unavailable(exc: DBAPIError) -> bool:
    """True for errors meaning 'cannot talk to the database', not 'bad statement'."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    message = str(exc.orig).lower()
    return any(
        text in message
        for text in (
            "could not connect",
            "connection refused",
            "server closed the connection",
            "terminating connection",
            "connection already closed",
            "database is locked",
            "unable to open database",
            "the database system is",
            "timeout",
        )
    )


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def dialect_insert(session: Session | Connection) -> Callable[[Any], Any]:
    """The ``insert`` of the database ``session`` (or connection) is on, the one with
    ``ON CONFLICT`` clauses."""
    bind = session if isinstance(session, Connection) else session.get_bind()
    dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
    return dialect.insert


def insert_if_absent(session: Session, table: Any, values: dict[str, Any], keys: list[str]) -> None:
    """``INSERT ... ON CONFLICT DO NOTHING`` on the unique ``keys``, on PostgreSQL and SQLite."""
    session.execute(
        dialect_insert(session)(table).values(**values).on_conflict_do_nothing(index_elements=keys)
    )
