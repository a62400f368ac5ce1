"""An app whose schema comes from its own Alembic migrations, for `taskgate dev --app`'s
alembic_ini path: its models, an async env.py as `alembic init -t async` writes one, and one
revision."""
