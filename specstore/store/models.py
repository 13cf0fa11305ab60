"""The registry's tables.

A *dataset* is one ``<ownerid>/<dataset>`` pair; every upload of its spec is a
new *revision*. ``datasets.last_revision`` is the counter that numbers the
revisions: it is incremented by an ``UPDATE`` in the same transaction that
inserts the revision, so the database's row lock (PostgreSQL) or write lock
(SQLite) hands out consecutive numbers even to simultaneous uploads, and the
unique constraint on ``(dataset_id, revision)`` backs that up.

The schema itself is created and changed by Alembic migrations
(``specstore/migrations``), never by ``create_all``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SEGMENT_LENGTH = 128

# Constraint names are fixed so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("owner_id", "name", name="uq_datasets_owner_id_name"),
        # The owner's listing: newest first, paged in SQL, page and count read from the
        # index alone on PostgreSQL (it carries what they read of each dataset).
        Index(
            "ix_datasets_listing",
            "owner_id",
            "modified",
            "id",
            postgresql_include=["findability", "name", "last_revision"],
        ),
        # The scheduler's question: which datasets are due.
        Index("ix_datasets_next_run", "next_run"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(SEGMENT_LENGTH))
    name: Mapped[str] = mapped_column(String(SEGMENT_LENGTH))
    # The newest revision's number (0 until the first revision is inserted).
    last_revision: Mapped[int] = mapped_column(Integer, default=0)
    # The newest revision's: who may see the dataset (its status, info, listing).
    findability: Mapped[str] = mapped_column(String(16), default="published")
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    modified: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_success: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The run lease: one run of the dataset at a time, whichever process or machine runs
    # it. Who holds it, until when (renewed while the run lasts), and the process that
    # runs the pipeline (``host:pid:start``).
    run_owner: Mapped[str | None] = mapped_column(String(160), nullable=True)
    run_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    run_process: Mapped[str | None] = mapped_column(String(160), nullable=True)
    # The newest revision's schedule, in seconds, and when it is next due (None: none).
    schedule_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    next_run: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Revision(Base):
    __tablename__ = "revisions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "revision", name="uq_revisions_dataset_id_revision"),
        # The announcer's question: which revisions are not announced yet (the ones still
        # going, and the few that ended since it last looked).
        Index(
            "ix_revisions_unannounced",
            "id",
            postgresql_where=text("announced IS NULL"),
            sqlite_where=text("announced IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    # The spec; NULL for a scheduled revision, which has the spec of revision
    # ``spec_from`` of its dataset (the upload it repeats) rather than a copy.
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    spec_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Who may see this revision: its spec's, kept whatever later revisions say.
    findability: Mapped[str] = mapped_column(String(16))
    # What made it: "dirty-task" (an upload), or "scheduled" (its dataset's schedule came due).
    trigger: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    success: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # The engine's log tail, its error lines and its statistics, as last reported.
    logs: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    errors: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    pipelines: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    # The main pipeline as users are shown it (no server path, no credential), made once
    # when the revision is handed over.
    shown_pipeline: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    modified: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    queued: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The embedded runner's claim on the revision: which process runs it, and
    # until when (renewed while it runs; an expired lease means it died).
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # When the revision's end was put in the announcements to deliver (NULL: not yet;
    # a revision that ended with it NULL is the announcer's to announce).
    announced: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Announcement(Base):
    """One revision's end, to be delivered to one receiver (an outbox row): the body as
    it is sent, and how its delivery goes."""

    __tablename__ = "announcements"
    __table_args__ = (
        # What is waiting, by when it is due (delivered and given-up rows are history).
        Index(
            "ix_announcements_waiting",
            "next_attempt",
            postgresql_where=text("delivered IS NULL AND given_up IS NULL"),
            sqlite_where=text("delivered IS NULL AND given_up IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_row: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"))
    receiver: Mapped[str] = mapped_column(String(2048))
    body: Mapped[str] = mapped_column(Text)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Why the last attempt failed, in a few words of specstore's (never the receiver's body).
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    delivered: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    given_up: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The process delivering it now, until when: no two deliver it at once.
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Setting(Base):
    """Values the service creates once and every worker shares (hook token, local key pair)."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
