"""The owner's listing read from its index alone.

``ix_datasets_owner_id_modified`` (owner, modified) gave the listing its order, but
each of the page's datasets, and each one counted, was then read from the table for its
findability, name and newest revision. ``ix_datasets_listing`` holds the listing's whole
order (owner, modified, id; scanned backwards for newest first) and, on PostgreSQL,
carries those columns along: the page and the count are index-only scans.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_datasets_owner_id_modified", table_name="datasets")
    op.create_index(
        "ix_datasets_listing",
        "datasets",
        ["owner_id", "modified", "id"],
        postgresql_include=["findability", "name", "last_revision"],
    )


def downgrade() -> None:
    op.drop_index("ix_datasets_listing", table_name="datasets")
    op.create_index("ix_datasets_owner_id_modified", "datasets", ["owner_id", "modified"])
