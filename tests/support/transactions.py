"""Watching the store's transactions from a test."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psycopg
from sqlalchemy import event

from tests.support.api import database_of


@contextlib.contextmanager
def commits_on_this_thread(app) -> Iterator[list[str]]:
    """The transactions this thread commits while the block runs (runner threads aside):
    those SQLAlchemy commits, and those committed by a COMMIT statement sent to psycopg
    (the pipelined uploads and events on PostgreSQL)."""
    engine = database_of(app).engine
    thread = threading.get_ident()
    committed: list[str] = []

    def on_commit(connection) -> None:
        if threading.get_ident() == thread:
            committed.append("commit")

    sent = psycopg.Connection.execute

    def execute(connection, query, *args, **kwargs):
        if threading.get_ident() == thread and query in (b"COMMIT", "COMMIT"):
            committed.append("commit")
        return sent(connection, query, *args, **kwargs)

    event.listen(engine, "commit", on_commit)
    psycopg.Connection.execute = execute
    try:
        yield committed
    finally:
        psycopg.Connection.execute = sent
        event.remove(engine, "commit", on_commit)
