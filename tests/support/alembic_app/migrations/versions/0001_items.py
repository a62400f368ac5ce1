"""The items table, with a check that metadata.create_all would not make.

Revision ID: 0001_items
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_items"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.CheckConstraint("length(name) > 0", name="items_name_not_empty"),
    )


def downgrade() -> None:
    op.drop_table("items")
