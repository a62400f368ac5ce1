"""the read model's role may SELECT the tasks table only, never users.password_hash

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-04

The one place that says what the replica's reader role may read. Earlier set-ups (pgpair,
deploy/postgres/primary-init.sh) gave it SELECT on every table through default privileges;
this takes that back, so a compromised gateway cannot read password hashes or any table a
later migration adds (registered OAuth clients, refresh tokens). A table the read tools need
later is granted here, by name. Runs as the app role, which owns the tables.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READER_ROLE = "taskgate_reader"
# What the task service's read tools (shared/task_service.py) select from.
READ_TABLES = ("tasks",)


def _for_reader(statements: str) -> None:
    # A deployment without the reader role (reads from elsewhere) has nothing to change.
    op.execute(
        f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN "
        f"{statements} END IF; END $$"
    )


def upgrade() -> None:
    _for_reader(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM {READER_ROLE}; "
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {READER_ROLE}; "
        f"GRANT SELECT ON {', '.join(READ_TABLES)} TO {READER_ROLE};"
    )


def downgrade() -> None:
    _for_reader(
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE}; "
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {READER_ROLE};"
    )
