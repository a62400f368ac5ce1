"""A FastAPI app whose user ids are UUIDs, as fastapi/full-stack-fastapi-template's are: its
items have UUID primary keys and a UUID owner column, and its bearer JWT's `sub` is the user's
UUID. Served by its spec (spec.py) in tests/e2e/test_uuid_app.py."""
