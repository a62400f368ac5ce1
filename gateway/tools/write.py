"""Write tools: one per OpenAPI operation the app spec chooses, forwarded to the app with the
caller's identity. The app owns every rule and answers errors; the gateway maps them into the
envelope, and leaves the caller a read mark at the write's commit position."""

from __future__ import annotations

import inspect
import uuid
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from mcp.server.mcpserver import MCPServer
from pydantic.json_schema import PydanticJsonSchemaWarning

from gateway import sdk_fence
from gateway.identity import identified
from gateway.openapi_tools import WriteOperation
from gateway.runtime import Runtime, RuntimeRef
from shared.api import LSN_HEADER
from shared.errors import ErrorCode, TaskgateError, validation_error
from shared.settings import Settings
from shared.user_ids import UserId, UserIds

# An argument the agent left out: not sent to the app, so the app's own default applies.
_OMITTED: Any = type("Omitted", (), {"__repr__": lambda _self: "<omitted>"})()


def _rule_of(error: ValidationError) -> tuple[list[str], str, str]:
    """Where an argument broke which rule, said without echoing the caller's value back."""
    where = [str(part) for part in error.absolute_path]
    rule, bound = str(error.validator), error.validator_value
    if rule == "required":
        given = error.instance if isinstance(error.instance, dict) else {}
        missing = next((name for name in bound if name not in given), "")
        return [*where, missing], "missing", "is required"
    messages = {
        "type": f"must be of type {bound}",
        "maxLength": f"must have at most {bound} characters",
        "minLength": f"must have at least {bound} characters",
        "maximum": f"must be at most {bound}",
        "minimum": f"must be at least {bound}",
        "enum": f"must be one of {bound}",
        "const": f"must be {bound!r}",
        "pattern": "does not match the expected pattern",
        "additionalProperties": "has properties that are not allowed",
        "anyOf": "matches none of the allowed types",
    }
    return where, rule, messages.get(rule, f"fails the {rule} rule")


def _refuse_bad_arguments(validator: Draft202012Validator, arguments: dict[str, Any]) -> None:
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    listed = []
    for error in errors:
        where, rule, message = _rule_of(error)
        listed.append({"loc": where, "type": rule, "msg": message})
    first = listed[0]
    raise validation_error(
        listed, f"arguments are not valid: {'.'.join(first['loc'])} {first['msg']}"
    )


async def _committed(rt: Runtime, user_id: UserId, commit_lsn: str | None) -> None:
    """The caller's next reads wait for this write: at its commit position when the app sent
    one (taskgate.fastapi), else at the primary's position now (one round trip more)."""
    if commit_lsn is None:
        commit_lsn = await rt.primary_position()
    if commit_lsn is not None:
        await rt.reader.note_write(user_id, commit_lsn)


def _tool_function(op: WriteOperation, ref: RuntimeRef) -> Callable[..., Awaitable[Any]]:
    validator = Draft202012Validator(op.input_schema)

    async def write_tool(**given: Any) -> dict[str, Any]:
        arguments = {k: v for k, v in given.items() if v is not _OMITTED}
        _refuse_bad_arguments(validator, arguments)
        rt = ref.get()
        caller = await rt.identity.caller()
        path, query, body = op.request(arguments)
        # One key per tool call: the gateway's own retry after a timeout reuses it, so the app
        # applies the call at most once.
        key = uuid.uuid4().hex if op.idempotency_header else None
        reply = await rt.backend.send(
            op.method.upper(), path, caller.auth, json=body, params=query, idempotency_key=key
        )
        await _committed(rt, caller.user_id, reply.headers.get(LSN_HEADER))
        if op.answers_nothing or not reply.content:
            return op.empty_answer(arguments)
        value = reply.json()
        if not isinstance(value, dict):
            raise TaskgateError(
                ErrorCode.SERVER_ERROR, "the app answered with a body that is not an object"
            )
        return value

    write_tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, annotation=Any, default=_OMITTED
            )
            for name in op.input_schema["properties"]
        ],
        return_annotation=dict[str, Any],
    )
    write_tool.__name__ = op.name
    write_tool.__doc__ = op.description
    return write_tool


def register_write_tools(
    server: MCPServer,
    settings: Settings,
    ref: RuntimeRef,
    operations: list[WriteOperation],
    user_ids: UserIds,
) -> list[str]:
    """Registers a tool per operation; returns their names."""
    with_identity = identified(settings, user_ids)
    for op in operations:
        with warnings.catch_warnings():
            # The schema the SDK derives (with _OMITTED defaults) is replaced just below.
            warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
            server.add_tool(
                with_identity(_tool_function(op, ref)),
                name=op.name,
                title=op.title,
                description=op.description,
                annotations=op.annotations,
                structured_output=True,
            )
        tool = sdk_fence.registered_tool(server, op.name)
        assert tool is not None
        # Published as the app's OpenAPI says; the function's own signature only collects them.
        user = tool.parameters.get("properties", {}).get("user_id")  # trusted mode's
        tool.parameters = _with_user(op.input_schema, user)
        tool.fn_metadata.output_schema = op.output_schema
    return [op.name for op in operations]


def _with_user(schema: dict[str, Any], user: dict[str, Any] | None) -> dict[str, Any]:
    if user is None:
        return schema
    return {
        **schema,
        "properties": {"user_id": user, **schema["properties"]},
        "required": ["user_id", *schema.get("required", [])],
    }
