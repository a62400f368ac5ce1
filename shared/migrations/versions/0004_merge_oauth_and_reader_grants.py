"""join the OAuth tables (0002) and the reader's grants (0003), made in parallel on 0001

Revision ID: 0004
Revises: 0002, 0003
Create Date: 2026-12-04

Nothing to do: the two do not touch the same objects, and in either order the reader role
cannot read the OAuth tables (0003 revokes its default privileges and every table grant but
tasks). A database already at 0003 gets 0002 and then this.
"""

from collections.abc import Sequence

revision: str = "0004"
down_revision: str | Sequence[str] | None = ("0002", "0003")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
