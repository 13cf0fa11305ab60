"""Schedules, specstore's own: when a dataset is due to be processed again, and what
started each revision.

``datasets.schedule_seconds`` and ``datasets.next_run`` come from the newest revision's
``schedule`` (``every <N><m|h|d|w>``); the scheduler of any server process claims a due
dataset by moving ``next_run`` on in the transaction that adds the new revision, so each
due time fires once. ``revisions.trigger`` says what made the revision: ``upload`` or
``scheduled``. Existing revisions were uploads; existing schedules take effect from the
dataset's next upload (until now nothing acted on them, nor checked them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("schedule_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("next_run", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_datasets_next_run", "datasets", ["next_run"])
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(sa.Column("trigger", sa.String(16), nullable=True))
    op.execute("UPDATE revisions SET trigger = 'upload'")
    with op.batch_alter_table("revisions") as batch:
        batch.alter_column("trigger", existing_type=sa.String(16), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.drop_column("trigger")
    op.drop_index("ix_datasets_next_run", table_name="datasets")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("next_run")
        batch.drop_column("schedule_seconds")
