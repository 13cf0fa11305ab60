"""A revision's main pipeline as users are shown it, made once when it is handed over.

``info`` showed the planned pipeline with the server's paths and the hook credentials
taken out, on every request. Now they are taken out once, at the handover, and kept in
``revisions.shown_pipeline``; a revision handed over before this is cleaned when read.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(sa.Column("shown_pipeline", document, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.drop_column("shown_pipeline")
