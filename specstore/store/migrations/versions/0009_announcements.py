"""Announcements: every revision's end delivered to the operator's receivers.

``revisions.announced`` is when a revision's end was put among the announcements to
deliver; a revision that ended with it NULL is the announcer's to take up, so the state
change itself, committed, is the announcement's first record (no code path that ends a
revision can forget one). ``announcements`` holds one row per revision and receiver:
the body as sent, attempts, the next one's time, delivered or given up, and the lease of
the process delivering it.

Revisions that ended before this are taken as announced: a new receiver is not sent
the whole history.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Stored in UTC, as in 0001 (specstore.store.models.UTCDateTime on read).
UTCDateTime = sa.DateTime(timezone=True)

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(sa.Column("announced", UTCDateTime, nullable=True))
    op.execute(
        "UPDATE revisions SET announced = modified "
        "WHERE state IN ('SUCCEEDED', 'FAILED', 'INVALID')"
    )
    op.create_index(
        "ix_revisions_unannounced",
        "revisions",
        ["id"],
        postgresql_where=sa.text("announced IS NULL"),
        sqlite_where=sa.text("announced IS NULL"),
    )
    op.create_table(
        "announcements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_row", sa.Integer(), nullable=False),
        sa.Column("receiver", sa.String(length=2048), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt", UTCDateTime, nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("delivered", UTCDateTime, nullable=True),
        sa.Column("given_up", UTCDateTime, nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.ForeignKeyConstraint(
            ["revision_row"],
            ["revisions.id"],
            name="fk_announcements_revision_row_revisions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_announcements"),
    )
    op.create_index(
        "ix_announcements_waiting",
        "announcements",
        ["next_attempt"],
        postgresql_where=sa.text("delivered IS NULL AND given_up IS NULL"),
        sqlite_where=sa.text("delivered IS NULL AND given_up IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_announcements_waiting", table_name="announcements")
    op.drop_table("announcements")
    op.drop_index("ix_revisions_unannounced", table_name="revisions")
    with op.batch_alter_table("revisions") as batch:
        batch.drop_column("announced")
