"""A scheduled revision shares its spec with the revision it repeats.

Each time a schedule came due, the newest revision's spec was stored again whole: a
spec of 15 MB on a schedule of every ten minutes grew the database by 2 GB a day. Now
a scheduled revision stores no spec of its own (``spec`` is NULL) and names, in
``spec_from``, the revision whose spec it has (the upload it repeats). What reads a
revision's spec reads ``spec``, else that revision's.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(sa.Column("spec_from", sa.Integer(), nullable=True))
        batch.alter_column("spec", existing_type=_document(), nullable=True)


def downgrade() -> None:
    op.execute(
        "UPDATE revisions SET spec = (SELECT origin.spec FROM revisions AS origin "
        "WHERE origin.dataset_id = revisions.dataset_id "
        "AND origin.revision = revisions.spec_from) WHERE spec IS NULL"
    )
    with op.batch_alter_table("revisions") as batch:
        batch.alter_column("spec", existing_type=_document(), nullable=False)
        batch.drop_column("spec_from")


def _document() -> sa.types.TypeEngine:
    from sqlalchemy.dialects.postgresql import JSONB

    return sa.JSON().with_variant(JSONB(), "postgresql")
