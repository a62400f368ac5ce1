"""What the OpenAPI schema says about responses: the error envelope and the commit LSN header."""

from __future__ import annotations

from typing import Any

from shared.api import LSN_HEADER as LSN_HEADER  # re-exported: the tests import it from here
from shared.errors import ErrorEnvelope

_ERRORS: dict[int, str] = {
    400: "Malformed request, e.g. a body that is not JSON (`bad_request`).",
    401: "Missing, expired or invalid credentials (`unauthorized`).",
    403: "A cookie-authenticated write without its CSRF token (`forbidden`).",
    404: "No such task for this user, or no such route (`not_found`).",
    405: "Method not allowed on this route (`bad_request`).",
    409: "Conflicts with the current state (`conflict`).",
    413: "Request body over the size limit (`bad_request`).",
    415: "A body that should be JSON was sent with another content type (`bad_request`).",
    422: "The request breaks a rule; `details.errors` lists each field (`validation_error`).",
    429: "Too many failed logins, or too many at once; wait `Retry-After` seconds "
    "(`rate_limited`, `details.retry_after_seconds`).",
    500: "Unexpected failure; `details.error_id` is in the server log (`server_error`).",
    503: "The database cannot be reached; retry shortly (`backend_unavailable`).",
}

# Whatever the route, these can happen: a bad body or method, the size limit, an outage.
COMMON_ERRORS = (400, 405, 413, 415, 422, 500, 503)
AUTH_ERRORS = (401, 403)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": ErrorEnvelope, "description": _ERRORS[status]}
        for status in sorted(set(statuses))
    }


LSN_HEADER_DOC: dict[str, Any] = {
    LSN_HEADER: {
        "description": (
            "WAL position (pg_lsn text, e.g. `0/3000060`) at or after this write's commit. "
            "A reader that waits until a replica has replayed it sees the write."
        ),
        "schema": {"type": "string", "pattern": "^[0-9A-F]+/[0-9A-F]+$"},
    }
}


def written(description: str) -> dict[str, Any]:
    """A successful write's response: it carries the commit LSN header."""
    return {"description": description, "headers": LSN_HEADER_DOC}
