"""The database: engine, transactions and migrations.

One :class:`Database` per process owns the SQLAlchemy engine. Every unit of
work runs in one transaction opened by :meth:`Database.transaction`; a write
transaction on SQLite starts with ``BEGIN IMMEDIATE`` so that concurrent
writers queue for the lock instead of failing half-way through.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from datapackage_pipelines_specstore.steps import sqlalchemy_url
from sqlalchemy import create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

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


def make_engine(url: str, for_reads: bool = False) -> Engine:
    """The engine for ``url``.

    On PostgreSQL a pooled connection idle for more than ``IDLE_PING_SECONDS`` is
    pinged before use and replaced if the server closed it (after a restart, say);
    one in constant use is not, which saves a round trip on every request. The
    engine ``for_reads`` runs each statement in autocommit (no BEGIN or COMMIT
    round trips); :meth:`Database.read` runs its work again on a fresh connection
    when a connection turns out to be dead, which is safe because it only reads.
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
        **({"isolation_level": "AUTOCOMMIT"} if for_reads else {}),
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
        if engine is not None or self.engine.dialect.name == "sqlite":
            self._read_engine = self.engine
        else:
            self._read_engine = make_engine(url, for_reads=True)
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
        self._read_engine.dispose()


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
