"""Read tools: one per read tool of the app spec, answered by the read model (cache, then a
replica), never by the app. Each is registered from the same table the fast path serves."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, create_model

from gateway.identity import identified
from gateway.runtime import RuntimeRef
from readmodel.reader import CachedRead, Reader
from readmodel.reads import CompiledRead, ReadTools
from shared.settings import Settings
from shared.user_ids import UserId, UserIds

# A read tool's value: the JSON form of its output model, as the read model's cache holds it.
JsonObject = Mapping[str, Any]
CachedReadOf = Callable[[Reader, UserId, Mapping[str, Any]], Awaitable[CachedRead | None]]


def read_only(title: str) -> ToolAnnotations:
    # Each tool reads only the caller's own rows: a closed world.
    return ToolAnnotations(title=title, readOnlyHint=True, idempotentHint=True, openWorldHint=False)


def output_model(read: CompiledRead) -> type[BaseModel]:
    """What the tool answers: the spec's model, or for a page, the list of it and a cursor."""
    tool = read.tool
    if tool.shape != "page":
        return tool.output
    items: Any = list[tool.output]  # type: ignore[name-defined]
    page: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{tool.output.__name__}Page",
        **{tool.items: (items, ...), "next_cursor": (str | None, None)},
    )
    return page


def _tool_function(read: CompiledRead, ref: RuntimeRef) -> Callable[..., Awaitable[JsonObject]]:
    """A function whose signature is the tool's arguments (the SDK builds the input schema from
    it) and whose return annotation is its output model; the SDK publishes that as the output
    schema and checks the value against it, once. (Building the model here would convert each
    cached read twice; the fast path converts the cached JSON itself, the same way.)"""

    async def read_tool(**arguments: Any) -> JsonObject:
        rt = ref.get()
        caller = await rt.identity.caller()
        return await rt.reader.read(read.name, caller.user_id, arguments)

    parameters = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            # The description is the field's, not its metadata's: carried over for the schema.
            annotation=Annotated[
                field.annotation, *field.metadata, Field(description=field.description)
            ],
            default=inspect.Parameter.empty if field.is_required() else field.default,
        )
        for name, field in read.arguments.model_fields.items()
    ]
    read_tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=output_model(read)
    )
    read_tool.__name__ = read.name
    read_tool.__doc__ = read.tool.description
    return read_tool


def register_read_tools(
    server: MCPServer, settings: Settings, ref: RuntimeRef, reads: ReadTools, user_ids: UserIds
) -> dict[str, CachedReadOf]:
    """Registers every read tool, and returns the table of their cache look-ups (the fast
    path answers exactly these): the read a tool's body makes, on its validated arguments,
    for a hit alone."""
    with_identity = identified(settings, user_ids)
    lookups: dict[str, CachedReadOf] = {}
    for name, read in reads.items():
        server.add_tool(
            with_identity(_tool_function(read, ref)),
            name=name,
            annotations=read_only(read.tool.title),
            structured_output=True,
        )
        lookups[name] = _cached_lookup(read)
    return lookups


def _cached_lookup(read: CompiledRead) -> CachedReadOf:
    names = tuple(read.arguments.model_fields)

    async def cached(
        reader: Reader, user_id: UserId, validated: Mapping[str, Any]
    ) -> CachedRead | None:
        # The validated arguments hold trusted mode's user_id too: not the tool's to read.
        return await reader.cached(read.name, user_id, {n: validated[n] for n in names})

    return cached
