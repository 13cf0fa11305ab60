"""Each revision keeps the findability it was uploaded with.

Until now findability was the dataset's, copied from its newest upload: publishing a
revision made every older (perhaps private) revision public. Existing revisions take
their dataset's findability, which is what they were shown with so far.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(sa.Column("findability", sa.String(16), nullable=True))
    op.execute(
        "UPDATE revisions SET findability = "
        "(SELECT datasets.findability FROM datasets WHERE datasets.id = revisions.dataset_id)"
    )
    with op.batch_alter_table("revisions") as batch:
        batch.alter_column("findability", existing_type=sa.String(16), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.drop_column("findability")
