"""How the store's statements are run: the one seam between the store and its database.

Every statement of the store is prebuilt (:mod:`.statements`) and run through a
:class:`Transaction` (writes) or a :class:`Reader` (reads), by position and with keyword
parameters. Behind them, two ways of running it:

* **SQLAlchemy's** ``Connection.execute``: always, on SQLite, and everywhere when the
  fast path is off (``DATABASE_FAST_PATH=off``, so that a SQLAlchemy upgrade never
  depends on what follows);
* **the driver's own cursor** (PostgreSQL with psycopg 3): the statement compiled once
  into the text the driver takes, the values going in and the rows coming out converted
  by SQLAlchemy's own processors for their types (UTC datetimes, JSON documents), on
  the same pooled connection, inside its transaction. A driver error is raised as
  SQLAlchemy raises it, the connection invalidated when it is gone, so the callers'
  retry and 503 work the same. And a transaction may be *pipelined* (psycopg's pipeline
  mode, on a connection in autocommit): its BEGIN goes out with its first statement and
  its COMMIT with its last, so that a transaction that reads one row and then writes is
  two round trips rather than four.

Why the fast path, what it gains, and how it is checked against the plain one:
docs/decisions/0001-the-sql-fast-path.md.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.selectable import ReturnsRows

Row = Sequence[Any]
# The dialect statements are checked against when they are built: the fast path's.
FAST_DIALECT = PGDialect_psycopg()


@functools.cache
def labels(statement: ReturnsRows) -> tuple[str, ...]:
    """The names of ``statement``'s columns, in the order of its rows' values."""
    return tuple(statement.exported_columns.keys())


@dataclass(frozen=True)
class Compiled:
    """A statement compiled once into the text its driver takes as it is, with what
    SQLAlchemy would do to the values going in and to those of its rows coming out."""

    text: str
    defaults: dict[str, Any]
    bind: tuple[tuple[str, Callable[[Any], Any]], ...]
    result: tuple[tuple[int, Callable[[Any], Any]], ...]

    def values(self, parameters: dict[str, Any]) -> dict[str, Any]:
        values = {**self.defaults, **parameters}
        for name, convert in self.bind:
            values[name] = convert(values[name])
        return values

    def rows(self, fetched: list[Any]) -> list[Row]:
        if not self.result:
            return fetched
        converted = []
        for row in fetched:
            row = list(row)
            for index, convert in self.result:
                row[index] = convert(row[index])
            converted.append(row)
        return converted


@functools.lru_cache(maxsize=256)
def compiled(statement: ReturnsRows, dialect: Dialect) -> Compiled | None:
    """``statement`` for its driver, or None where SQLAlchemy must run it: a driver whose
    parameters are not named (SQLite's), or a parameter rendered at execution (``IN``
    lists)."""
    if dialect.paramstyle != "pyformat":
        return None
    compiled_ = statement.compile(dialect=dialect)
    if compiled_.literal_execute_params or compiled_.post_compile_params:
        return None
    # By the name each parameter is rendered with (one name may stand for two entries).
    processors = {
        compiled_.bind_names[parameter]: parameter.type.dialect_impl(dialect).bind_processor(
            dialect
        )
        for parameter in compiled_.binds.values()
    }
    bind = tuple((name, processor) for name, processor in processors.items() if processor)
    result = tuple(
        (index, processor)
        for index, column in enumerate(statement.exported_columns)
        if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None))
    )
    return Compiled(compiled_.string, dict(compiled_.params), bind, result)


def takes_the_fast_path(statement: ReturnsRows) -> bool:
    """Whether the driver can run ``statement`` as it is compiled once."""
    return compiled(statement, FAST_DIALECT) is not None


class Reader:
    """Statements on one connection, each answering rows (see the module's docstring)."""

    def __init__(self, connection: Connection, fast: bool) -> None:
        self.connection = connection
        self.dialect = connection.dialect.name
        self._fast = fast

    def first(self, statement: ReturnsRows, **parameters: Any) -> Row | None:
        """The first row of ``statement`` (None: no row)."""
        rows = self._run(statement, parameters, rows=1)
        return rows[0] if rows else None

    def all(self, statement: ReturnsRows, **parameters: Any) -> list[Row]:
        return self._run(statement, parameters, rows=None)

    def scalar(self, statement: ReturnsRows, **parameters: Any) -> Any:
        """The first column of the first row (None: no row)."""
        row = self.first(statement, **parameters)
        return None if row is None else row[0]

    def _driver(self, statement: ReturnsRows) -> Compiled | None:
        return compiled(statement, self.connection.dialect) if self._fast else None

    def _run(self, statement: ReturnsRows, parameters: dict[str, Any], rows: int | None) -> list:
        """``statement``'s rows: none (``rows`` 0), the first (1) or all of them (None)."""
        driver = self._driver(statement)
        if driver is None:
            if in_pipeline_mode(self.connection):
                # SQLAlchemy's execute would read no answer in pipeline mode.
                raise RuntimeError(f"not a statement for a pipelined transaction: {statement}")
            result = self.connection.execute(statement, parameters)
            if rows == 0:
                return [result.rowcount]
            if rows is None:
                return list(result.all())
            row = result.first()  # which closes the result: nothing is left pending
            return [] if row is None else [row]
        values = driver.values(parameters)
        try:
            with self.connection.connection.dbapi_connection.cursor() as cursor:
                cursor.execute(driver.text, values)
                if rows == 0:
                    return [cursor.rowcount]
                fetched = cursor.fetchall() if rows is None else cursor.fetchmany(1)
        except self.connection.dialect.loaded_dbapi.Error as exc:
            raise driver_error(self.connection, exc, driver.text, values) from exc
        return driver.rows(fetched)


class Transaction(Reader):
    """A write transaction's statements: what :class:`Reader` runs, and writes."""

    def count(self, statement: ReturnsRows, **parameters: Any) -> int:
        """Run ``statement``; how many rows it changed."""
        return self._run(statement, parameters, rows=0)[0]

    def send(self, statement: ReturnsRows, **parameters: Any) -> None:
        """Run ``statement``, whose answer nobody waits for: in a pipelined transaction
        it travels with the next statement that is waited for (an error surfaces then,
        or at the COMMIT)."""
        if in_pipeline_mode(self.connection):
            self.later(statement, **parameters)
        else:
            self._run(statement, parameters, rows=0)

    def later(self, statement: ReturnsRows, **parameters: Any) -> Callable[[], Row | None]:
        """Send ``statement`` now; what answers its first row once the transaction has
        ended. In a pipelined transaction the statement travels with the COMMIT;
        elsewhere its row is read at once and kept."""
        driver = self._driver(statement)
        if driver is None or not in_pipeline_mode(self.connection):
            row = self.first(statement, **parameters)
            return lambda: row
        values = driver.values(parameters)
        cursor = self.connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(driver.text, values)
        except self.connection.dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise driver_error(self.connection, exc, driver.text, values) from exc

        def row() -> Row | None:
            try:
                with cursor:
                    fetched = cursor.fetchmany(1) if cursor.description else []
            except self.connection.dialect.loaded_dbapi.Error as exc:
                raise driver_error(self.connection, exc, driver.text, values) from exc
            rows = driver.rows(fetched)
            return rows[0] if rows else None

        return row


@contextlib.contextmanager
def pipelined_connection(engine: Engine) -> Iterator[Connection]:
    """A transaction on a connection of ``engine`` (in autocommit) in psycopg's pipeline
    mode: BEGIN goes out with the first statement, COMMIT with the last. An error raised
    in the block leaves the transaction open: the pool rolls it back as the connection
    goes back."""
    with engine.connect() as connection:
        driver = connection.connection.dbapi_connection
        try:
            with driver.pipeline():
                driver.execute(b"BEGIN", prepare=False)
                yield connection
                driver.execute(b"COMMIT", prepare=False)
        except connection.dialect.loaded_dbapi.Error as exc:
            raise driver_error(connection, exc, "COMMIT", {}) from exc


def can_pipeline(engine: Engine | None) -> bool:
    return engine is not None and engine.dialect.driver == "psycopg"  # psycopg2 has no pipelines


def in_pipeline_mode(connection: Connection) -> bool:
    pgconn = getattr(connection.connection.dbapi_connection, "pgconn", None)
    return bool(pgconn is not None and pgconn.pipeline_status)


def driver_error(
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
