"""Write tools from an app's OpenAPI document: which operations, their input and output schemas,
their annotations, and how a call becomes the HTTP request to the app.

The input schema is the operation's path and query parameters and its JSON body's properties,
flattened into one object, with every $ref resolved. Annotations come from the method: DELETE
is destructive, PUT and DELETE are idempotent, POST and PATCH are not (a spec may say a given
operation is). Anything the gateway cannot map is refused when it starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mcp.types import ToolAnnotations

from shared.appspec import Rename, Writes

_WRITE_METHODS = ("post", "put", "patch", "delete")


class OpenApiError(ValueError):
    """A spec's write tools that cannot be built from the app's OpenAPI document."""


@dataclass(frozen=True)
class WriteOperation:
    operation_id: str
    name: str
    title: str
    description: str
    method: str
    path: str
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    body_fields: tuple[str, ...]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    annotations: ToolAnnotations
    idempotency_header: str | None  # sent with a fresh key per call, where the app takes one
    answers_nothing: bool  # 204 or no JSON body: the tool answers its path arguments instead

    def request(self, arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any], Any]:
        """The URL path, query parameters and JSON body for a call's arguments."""
        path = self.path
        for name in self.path_params:
            path = path.replace("{" + name + "}", quote(str(arguments[name]), safe=""))
        query = {n: arguments[n] for n in self.query_params if arguments.get(n) is not None}
        body = {n: arguments[n] for n in self.body_fields if n in arguments}
        return path, query, body if self.body_fields else None

    def empty_answer(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        answer = {n: arguments[n] for n in self.path_params}
        if self.method == "delete":
            answer["deleted"] = True
        return answer


def write_operations(document: Mapping[str, Any], writes: Writes) -> list[WriteOperation]:
    """The operations a spec's Writes selects, mapped; OpenApiError for a name it gives that the
    document does not have, or an operation that cannot be a tool."""
    operations = _operations(document)
    for label, names in (
        ("include_operations", writes.include_operations),
        ("exclude_operations", writes.exclude_operations),
        ("tools", tuple(writes.tools)),
    ):
        unknown = sorted(set(names) - set(operations))
        if unknown:
            raise OpenApiError(
                f"writes.{label} names operations the app does not have: {', '.join(unknown)}; "
                f"its write operations are: {', '.join(sorted(operations))}"
            )
    tags = {t for _, _, op in operations.values() for t in op.get("tags", [])}
    for label, chosen in (
        ("include_tags", writes.include_tags),
        ("exclude_tags", writes.exclude_tags),
    ):
        unknown = sorted(set(chosen) - tags)
        if unknown:
            raise OpenApiError(f"writes.{label} names tags no write operation has: {unknown}")
    chosen_ops = []
    for operation_id, (method, path, op) in operations.items():
        op_tags = set(op.get("tags", []))
        included = (not writes.include_operations and not writes.include_tags) or (
            operation_id in writes.include_operations or op_tags & set(writes.include_tags)
        )
        excluded = operation_id in writes.exclude_operations or op_tags & set(writes.exclude_tags)
        if included and not excluded:
            rename = writes.tools.get(operation_id, Rename())
            try:
                mapped = _mapped(
                    document, operation_id, method, path, op, rename, writes.idempotency_header
                )
            except OpenApiError as exc:  # a login form, say, served because nothing was chosen
                raise OpenApiError(
                    f"{exc}; leave it out with Writes(exclude_operations=[{operation_id!r}]), or "
                    "choose the tools with include_tags or include_operations"
                ) from None
            chosen_ops.append(mapped)
    names = [op.name for op in chosen_ops]
    if len(set(names)) != len(names):
        raise OpenApiError(f"two write tools would share a name: {sorted(names)}")
    return chosen_ops


def _operations(document: Mapping[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for path, item in document.get("paths", {}).items():
        for method in _WRITE_METHODS:
            op = item.get(method)
            if op is None:
                continue
            operation_id = op.get("operationId")
            if not operation_id:
                raise OpenApiError(f"{method.upper()} {path} has no operationId")
            found[operation_id] = (method, path, op)
    return found


def _mapped(
    document: Mapping[str, Any],
    operation_id: str,
    method: str,
    path: str,
    op: dict[str, Any],
    rename: Rename,
    idempotency_header: str,
) -> WriteOperation:
    where = f"operation {operation_id!r} ({method.upper()} {path})"
    properties: dict[str, Any] = {}
    required: list[str] = []
    path_params: list[str] = []
    query_params: list[str] = []
    idempotency = None
    for parameter in op.get("parameters", []):
        parameter = _resolved(document, parameter)
        name, kind = parameter["name"], parameter["in"]
        if kind == "header" and name.lower() == idempotency_header.lower():
            idempotency = name
            continue
        if kind not in ("path", "query"):
            if parameter.get("required"):
                raise OpenApiError(
                    f"{where}: required {kind} parameter {name!r} cannot be a tool argument"
                )
            continue
        schema = dict(_resolved(document, parameter.get("schema", {})))
        if parameter.get("description") and "description" not in schema:
            schema["description"] = parameter["description"]
        schema.pop("title", None)
        properties[name] = schema
        if parameter.get("required") or kind == "path":
            required.append(name)
        (path_params if kind == "path" else query_params).append(name)
    body_fields: list[str] = []
    content = op.get("requestBody", {}).get("content", {})
    if content:
        if "application/json" not in content:
            raise OpenApiError(f"{where}: only a JSON request body can be a tool's arguments")
        body = _resolved(document, content["application/json"].get("schema", {}))
        if body.get("type") != "object" or "properties" not in body:
            raise OpenApiError(f"{where}: the request body must be a JSON object with properties")
        for name, schema in body["properties"].items():
            if name in properties:
                raise OpenApiError(f"{where}: body field {name!r} has a parameter's name")
            schema = dict(schema)
            schema.pop("title", None)
            properties[name] = schema
            body_fields.append(name)
        if op["requestBody"].get("required", False):
            required += [n for n in body.get("required", [])]
    input_schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        # The gateway refuses unknown arguments (an agent's typo is not a silent no-op).
        "additionalProperties": False,
    }
    if required:
        input_schema["required"] = required
    output_schema, answers_nothing = _output(document, method, op, path_params, properties)
    title = rename.title or op.get("summary") or operation_id.replace("_", " ").capitalize()
    description = rename.description or op.get("description") or op.get("summary") or title
    idempotent = rename.idempotent if rename.idempotent is not None else method in ("put", "delete")
    annotations = ToolAnnotations(
        title=title,
        readOnlyHint=False,
        destructiveHint=method == "delete",
        idempotentHint=idempotent,
        openWorldHint=False,
    )
    return WriteOperation(
        operation_id=operation_id,
        name=rename.name or operation_id,
        title=title,
        description=description,
        method=method,
        path=path,
        path_params=tuple(path_params),
        query_params=tuple(query_params),
        body_fields=tuple(body_fields),
        input_schema=input_schema,
        output_schema=output_schema,
        annotations=annotations,
        idempotency_header=idempotency,
        answers_nothing=answers_nothing,
    )


def _output(
    document: Mapping[str, Any],
    method: str,
    op: dict[str, Any],
    path_params: list[str],
    properties: dict[str, Any],
) -> tuple[dict[str, Any], bool]:
    responses = op.get("responses", {})
    for status in sorted(s for s in responses if s.startswith("2")):
        content = _resolved(document, responses[status]).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        if schema:
            resolved = _resolved(document, schema)
            if resolved.get("type") == "object":
                return resolved, False
    # No JSON object answered: the tool answers the path arguments it acted on.
    empty: dict[str, Any] = {
        "type": "object",
        "properties": {n: properties[n] for n in path_params},
        "required": list(path_params),
    }
    if method == "delete":
        empty["properties"]["deleted"] = {"type": "boolean", "const": True, "default": True}
        empty["required"].append("deleted")
    return empty, True


def _resolved(document: Mapping[str, Any], schema: Any, seen: tuple[str, ...] = ()) -> Any:
    """`schema` with every $ref into the document replaced by what it names."""
    if isinstance(schema, list):
        return [_resolved(document, item, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#/"):
            raise OpenApiError(f"only local $refs can be resolved, not {ref!r}")
        if ref in seen:
            raise OpenApiError(f"{ref} refers to itself: a recursive schema cannot be a tool's")
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _resolved(document, merged, (*seen, ref))
    return {key: _resolved(document, value, seen) for key, value in schema.items()}
