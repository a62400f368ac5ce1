"""What the served OpenAPI schema promises: codes, the LSN header, the envelope, the schemes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from backend.openapi import LSN_HEADER

WRITES = {
    ("post", "/api/v1/tasks"): ("201", "200"),
    ("patch", "/api/v1/tasks/{task_id}"): ("200",),
    ("post", "/api/v1/tasks/{task_id}/complete"): ("200",),
    ("delete", "/api/v1/tasks/{task_id}"): ("204",),
}


@pytest.fixture
async def document(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    served: dict[str, Any] = response.json()
    return served


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_writes_document_their_success_codes_and_the_lsn_header(document: dict[str, Any]) -> None:
    for (method, path), codes in WRITES.items():
        responses = document["paths"][path][method]["responses"]
        for code in codes:
            assert LSN_HEADER in responses[code].get("headers", {}), (method, path, code)


def test_sign_up_answers_201_and_logout_204(document: dict[str, Any]) -> None:
    assert "201" in document["paths"]["/api/v1/users"]["post"]["responses"]
    assert "204" in document["paths"]["/api/v1/auth/logout"]["post"]["responses"]


def test_every_error_response_is_the_envelope(document: dict[str, Any]) -> None:
    envelope_ref = "#/components/schemas/ErrorEnvelope"
    for method, path, operation in _operations(document):
        errors = {code: r for code, r in operation["responses"].items() if code >= "400"}
        assert "500" in errors, (method, path)
        for code, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": envelope_ref}, (method, path, code)
    # FastAPI's own 422 shape would contradict what the backend sends.
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_task_routes_declare_bearer_or_cookie_auth(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    bearer = next(name for name, s in schemes.items() if s.get("scheme") == "bearer")
    cookie = next(name for name, s in schemes.items() if s.get("in") == "cookie")
    assert schemes[bearer]["type"] == "http"
    assert schemes[bearer]["bearerFormat"] == "JWT"
    for method, path, operation in _operations(document):
        if path.startswith("/api/v1/tasks"):
            assert operation["security"] == [{bearer: []}, {cookie: []}], (method, path)
            assert "401" in operation["responses"], (method, path)


def test_task_bodies_refuse_unknown_fields(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("TaskCreate", "TaskUpdate", "UserCreate"):
        assert schemas[name]["additionalProperties"] is False, name
    update = schemas["TaskUpdate"]
    assert update["minProperties"] == 1
    # title and completed may be left out but never null; description may be null (cleared).
    assert update["properties"]["title"]["type"] == "string"
    assert update["properties"]["completed"]["type"] == "boolean"
    assert {"type": "null"} in update["properties"]["description"]["anyOf"]
