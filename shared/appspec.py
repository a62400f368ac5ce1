"""The app spec: how a FastAPI app on PostgreSQL is described to the gateway, in one module.

A spec names the app's OpenAPI document (an import path, never imported where the gateway can
avoid it), the owner column of each model once, the write tools as a choice of the app's
operations, and the read tools as functions that build a SQLAlchemy select. The gateway adds
to every read what a spec must not be trusted to write: the caller filter on each owned table,
keyset paging, the cache, read-your-writes and the replicas. The task service is described
with this same API (shared/task_service.py).

Users import these names from `taskgate.spec`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, MetaData
from sqlalchemy.orm import InstrumentedAttribute

ReadShape = Literal["page", "one", "row"]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ReadTool:
    """A read tool: `query`'s parameters are the tool's arguments (typed, `Annotated` with a
    pydantic `Field` for their description), and it returns a select over the app's models.

    shape "page": a list, `{<items>: [output], next_cursor}`, ordered and paged by `order`
    (its last column unique, all in one direction); the tool also takes `limit` and `cursor`.
    shape "one": one row as `output`, or not_found with `missing` (formatted with the args).
    shape "row": the select's one row (an aggregate) as `output`.
    """

    name: str
    query: Callable[..., Any]
    output: type[BaseModel]
    shape: ReadShape
    title: str
    description: str
    order: tuple[ColumnElement[Any], ...] = ()
    items: str = "items"
    missing: str = "not found"


@dataclass(frozen=True)
class Rename:
    """One OpenAPI operation's tool, named, titled and described for an agent; `idempotent`
    overrides what the method says (a POST that completes something is idempotent)."""

    name: str | None = None
    title: str | None = None
    description: str | None = None
    idempotent: bool | None = None


@dataclass(frozen=True)
class Writes:
    """Which of the app's operations become write tools: by operationId and/or tag. An
    operation is served when it is included (by id or tag; everything when both are empty) and
    not excluded. `tools` renames or redescribes them by operationId."""

    include_operations: Sequence[str] = ()
    include_tags: Sequence[str] = ()
    exclude_operations: Sequence[str] = ()
    exclude_tags: Sequence[str] = ()
    tools: Mapping[str, Rename] = field(default_factory=dict)
    # The request header the app reads an idempotency key from, on operations that declare it.
    idempotency_header: str = "Idempotency-Key"


@dataclass(frozen=True)
class TokenExchange:
    """The gateway exchanges the agent's token for one issued for the app (RFC 8693, at the
    app's /token), as it does with taskgate's own backend."""


@dataclass(frozen=True)
class SignedJwt:
    """The gateway signs a short-lived HS256 JWT for the caller with a secret the app already
    verifies (environment variable `secret_env`), the user id in `claim`."""

    secret_env: str
    claim: str = "sub"
    audience: str | None = None
    issuer: str | None = None
    ttl_seconds: int = 60


@dataclass(frozen=True)
class ServiceSession:
    """The gateway logs in once as a service account (form fields `username`/`password` from
    `email_env`/`password_env`, at `login_path`), keeps the session cookie, and names the caller
    in `user_header`, which the app trusts on that session only."""

    login_path: str
    email_env: str
    password_env: str
    user_header: str = "X-Acting-User"


BackendAuth = TokenExchange | SignedJwt | ServiceSession


@dataclass(frozen=True)
class Identity:
    """Who the caller is: the user id in the agent's bearer JWT (`claim`, "sub" by default),
    verified with the secret in `secret_env` (JWT_SECRET when None: taskgate's own tokens, for
    this gateway's audience). AUTH_MODE=user_param (trusted) works for every app alike."""

    claim: str = "sub"
    secret_env: str | None = None
    audience: str | None = None


@dataclass
class AppSpec:
    """One FastAPI app, as the gateway serves it. Read tools are added with the decorators,
    which return the function unchanged."""

    name: str
    # "package.module:app" (a FastAPI app, imported only to read its OpenAPI document) or the
    # path of an OpenAPI JSON file, relative to the spec's module when not absolute.
    openapi: str
    owners: Mapping[Any, InstrumentedAttribute[Any]]
    writes: Writes = field(default_factory=Writes)
    instructions: str = ""
    metadata: MetaData | None = None
    alembic_ini: str | None = None  # dev creates the schema with it, else metadata.create_all
    # A GET route of the app that answers 200 while it is up: dev waits for it at start, and the
    # gateway's /readyz asks it (e.g. "/api/v1/utils/health-check/").
    health_path: str = "/healthz"
    identity: Identity = field(default_factory=Identity)
    backend_auth: BackendAuth = field(default_factory=TokenExchange)
    reads: list[ReadTool] = field(default_factory=list)
    # Where the spec's module lives (set by the loader): relative paths resolve from it.
    root: str | None = None
    openapi_document: dict[str, Any] | None = None  # read once, by shared.spec_loader

    def page(
        self,
        output: type[BaseModel],
        *,
        order: Sequence[ColumnElement[Any]],
        items: str,
        title: str,
        name: str | None = None,
    ) -> Callable[[F], F]:
        return self._read("page", output, title, name, order=tuple(order), items=items)

    def one(
        self, output: type[BaseModel], *, title: str, missing: str, name: str | None = None
    ) -> Callable[[F], F]:
        return self._read("one", output, title, name, missing=missing)

    def row(
        self, output: type[BaseModel], *, title: str, name: str | None = None
    ) -> Callable[[F], F]:
        return self._read("row", output, title, name)

    def _read(
        self,
        shape: ReadShape,
        output: type[BaseModel],
        title: str,
        name: str | None,
        **options: Any,
    ) -> Callable[[F], F]:
        def declare(query: F) -> F:
            self.reads.append(
                ReadTool(
                    name=name or query.__name__,
                    query=query,
                    output=output,
                    shape=shape,
                    title=title,
                    description=_docstring(query),
                    **options,
                )
            )
            return query

        return declare


def _docstring(query: Callable[..., Any]) -> str:
    return inspect.cleandoc(query.__doc__ or "")
