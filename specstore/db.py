"""The database: engine, transactions and migrations.

One :class:`Database` per process owns the SQLAlchemy engine. Every unit of
work runs in one transaction opened by :meth:`Database.transaction`; a write
transaction on SQLite starts with ``BEGIN IMMEDIATE`` so that concurrent
writers queue for the lock instead of failing half-way through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .errors import ServiceUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
# How long a request waits for another writer before it answers 503.
SQLITE_BUSY_TIMEOUT_SECONDS = 5
_WRITE = "specstore_write"


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


def make_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
    )


class Database:
    """The engine and the way to run a transaction against it."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(
            self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self, write: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error.

        A database that cannot be reached becomes :class:`ServiceUnavailable`.
        """
        factory = self._writer if write else self._reader
        try:
            with factory() as session, session.begin():
                yield session
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_unavailable(exc):
                raise ServiceUnavailable("the database is unavailable, try again shortly") from exc
            raise

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


def insert_if_absent(session: Session, table: Any, values: dict[str, Any], keys: list[str]) -> None:
    """``INSERT ... ON CONFLICT DO NOTHING`` on the unique ``keys``, on PostgreSQL and SQLite."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
    )
