"""The registry: datasets, their revisions, and shared settings.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Stored in UTC; specstore.store.models.UTCDateTime makes values timezone-aware on read.
UTCDateTime = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("last_revision", sa.Integer(), nullable=False),
        sa.Column("findability", sa.String(16), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("modified", UTCDateTime, nullable=False),
        sa.Column("last_success", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("owner_id", "name", name="uq_datasets_owner_id_name"),
    )
    op.create_index("ix_datasets_owner_id_modified", "datasets", ["owner_id", "modified"])
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("spec", JSONDocument, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=True),
        sa.Column("logs", JSONDocument, nullable=False),
        sa.Column("errors", JSONDocument, nullable=False),
        sa.Column("stats", JSONDocument, nullable=False),
        sa.Column("pipelines", JSONDocument, nullable=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("modified", UTCDateTime, nullable=False),
        sa.Column("queued", UTCDateTime, nullable=True),
        sa.Column("started", UTCDateTime, nullable=True),
        sa.Column("ended", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_revisions"),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name="fk_revisions_dataset_id_datasets",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("dataset_id", "revision", name="uq_revisions_dataset_id_revision"),
    )
    op.create_table(
        "settings",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_settings"),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_table("revisions")
    op.drop_index("ix_datasets_owner_id_modified", table_name="datasets")
    op.drop_table("datasets")
