"""The seed's word for what made a revision: ``dirty-task`` for an upload (the front ends
written against the original specstore know it), ``scheduled`` for a schedule.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE revisions SET trigger = 'dirty-task' WHERE trigger = 'upload'")


def downgrade() -> None:
    op.execute("UPDATE revisions SET trigger = 'upload' WHERE trigger = 'dirty-task'")
