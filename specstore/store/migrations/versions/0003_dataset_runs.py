"""One run of a dataset at a time, across processes and machines.

A dataset's run lease: which run holds it (``run_owner``), until when
(``run_until``, renewed while the run lasts), and the process that runs it
(``run_process``, ``host:pid:start``), so that whoever takes over a lease that
ran out can first make sure that process is gone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("run_owner", sa.String(160), nullable=True))
        batch.add_column(sa.Column("run_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("run_process", sa.String(160), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("run_process")
        batch.drop_column("run_until")
        batch.drop_column("run_owner")
