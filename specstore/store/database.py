"""The database: its engines, its transactions, and its migrations.

One :class:`Database` per process owns the SQLAlchemy engines. The store runs every
unit of work in one transaction, in one of two ways: :meth:`Database.read` (statements
that only read, each its own snapshot on PostgreSQL, retried once on a connection the
server closed) and :meth:`Database.write` (one transaction, committed when the block
ends, rolled back on any error; on SQLite it starts with ``BEGIN IMMEDIATE``, so that
concurrent writers queue for the lock instead of failing half-way through). A database
that cannot be reached is :class:`ServiceUnavailable` (503) either way.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from ..errors import ServiceUnavailable
from .sql import Reader, Transaction, can_pipeline, pipelined_connection

MIGRATIONS = Path(__file__).parent / "migrations"
# How long a request waits for another writer before it answers 503.
SQLITE_BUSY_TIMEOUT_SECONDS = 5
_WRITE = "specstore_write"
_LAST_USED = "specstore_last_used"
# A pooled PostgreSQL connection unused for this long is checked before it is used.
IDLE_PING_SECONDS = 1.0
T = TypeVar("T")


def database_url(url: str) -> str:
    """``url`` with the driver named that specstore's own database is served with:
    psycopg 3, which prepares a statement on the server once a connection has run it a
    few times, so PostgreSQL stops parsing and planning the same few queries on every
    request (an explicit ``postgresql+psycopg2://`` is served as it says; ``postgres://``,
    as some hosts hand URLs out, is PostgreSQL's)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def json_text(value: Any) -> str:
    """A JSON document as the database is sent it: by orjson, whose encoding of a
    revision's spec and pipelines costs a fraction of the standard library's, or by the
    standard library where orjson refuses a value a spec may hold (an integer past 64
    bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


# A run of 19 digits: a number orjson may not read exactly (it reads an integer past 64
# bits as a float), or a string that holds one.
_LONG_NUMBER = re.compile(r"[0-9]{19}")
_LONG_NUMBER_BYTES = re.compile(rb"[0-9]{19}")


def json_document(data: str | bytes) -> Any:
    """A JSON document as read back from the database (PostgreSQL's driver hands over
    bytes, SQLite's a string): by orjson, or by the standard library, which keeps every
    integer exact, where the text holds a run of 19 digits or orjson refuses it (a lone
    surrogate, which only an older release could have stored)."""
    long_number = _LONG_NUMBER if isinstance(data, str) else _LONG_NUMBER_BYTES
    if long_number.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def make_engine(url: str, autocommit: bool = False) -> Engine:
    """The engine for ``url``.

    On PostgreSQL a pooled connection idle for more than ``IDLE_PING_SECONDS`` is
    pinged before use and replaced if the server closed it (after a restart, say);
    one in constant use is not, which saves a round trip on every request. An
    ``autocommit`` engine's connections send no BEGIN or COMMIT of their own: each
    statement is a transaction (reads), unless the statements sent say otherwise
    (pipelined writes).
    """
    url = database_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    engine = create_engine(
        url,
        json_serializer=json_text,
        json_deserializer=json_document,
        pool_size=5,
        max_overflow=5,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
        # Set once per connection, as its default: never switched back and forth.
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    _ping_when_idle(engine)
    return engine


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        json_serializer=json_text,
        json_deserializer=json_document,
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
    """The engines, and the two ways the store runs a unit of work on them."""

    def __init__(self, url: str, engine: Engine | None = None, fast_path: bool = True) -> None:
        self.url = url = database_url(url)
        self.engine = engine or make_engine(url)
        self.fast_path = fast_path
        # On PostgreSQL, reads and pipelined writes go on connections in autocommit.
        self._autocommit_engine: Engine | None = None
        if engine is None and self.engine.dialect.name == "postgresql":
            self._autocommit_engine = make_engine(url, autocommit=True)
        self._read_engine = self._autocommit_engine or self.engine
        self._write_engine = self.engine.execution_options(**{_WRITE: True})

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def read(self, work: Callable[[Reader], T]) -> T:
        """The result of ``work``, which only reads. On PostgreSQL each statement is its own
        snapshot, and a connection found closed by the server is replaced and ``work``
        run once more."""
        with _unavailable_as_503():
            try:
                return self._read_once(work)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            return self._read_once(work)

    def _read_once(self, work: Callable[[Reader], T]) -> T:
        with self._read_engine.connect() as connection:
            return work(Reader(connection, self.fast_path))

    @contextlib.contextmanager
    def write(self, pipelined: bool = False) -> Iterator[Transaction]:
        """One write transaction: committed when the block ends, rolled back on any error.

        ``pipelined`` (where the driver can, and the fast path is on): two round trips to
        PostgreSQL rather than four, the BEGIN going out with the first statement and the
        COMMIT with the last. A statement then waits for its answer only when its rows are
        read (:meth:`Transaction.first`); one whose row is wanted after the COMMIT goes
        with :meth:`Transaction.later`, one with no answer with :meth:`Transaction.send`,
        and an error in either surfaces when the block ends.
        """
        engine = self._autocommit_engine
        with _unavailable_as_503():
            if pipelined and self.fast_path and can_pipeline(engine):
                assert engine is not None
                with pipelined_connection(engine) as connection:
                    yield Transaction(connection, fast=True)
                return
            with self._write_engine.begin() as connection:
                yield Transaction(connection, self.fast_path)

    @contextlib.contextmanager
    def transaction(self, write: bool = False) -> Iterator[Session]:
        """An ORM session in one transaction, for tools and tests that want the models
        (the store's own paths use :meth:`read` and :meth:`write`)."""
        engine = self._write_engine if write else self.engine
        with (
            _unavailable_as_503(),
            Session(engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` with the Alembic migrations."""
        self._migrate(command.upgrade, revision)

    def schema_version(self) -> str | None:
        """The migration the schema is at (None: a database with no schema yet)."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

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
