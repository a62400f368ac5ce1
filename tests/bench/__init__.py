"""The benchmark: run on purpose with `uv run python -m tests.bench.run`, never by pytest."""
