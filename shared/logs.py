"""Logging for every process: plain text, or one JSON object per line with LOG_JSON=1.

A request id rides in a context variable: the gateway sets it for each MCP tool call, sends it
to the backend as X-Request-ID, and the backend sets it again from that header, so one id
follows a call through both processes' logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

# The one request-id variable of a process; gateway.request_id binds it for each tool call.
request_id_var: ContextVar[str | None] = ContextVar("taskgate_request_id", default=None)
# Ids come from clients: short and plain, so they cannot forge log lines or bloat them.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Attributes every LogRecord has; anything else on a record came from `extra=`.
# (uvicorn's color_message repeats the message with terminal colours: not for JSON.)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}


def current_request_id() -> str | None:
    return request_id_var.get()


def request_id_from(header: str | None) -> str:
    """The caller's id when it is a plain token, or a new one."""
    if header and _VALID_ID.match(header):
        return header
    return uuid.uuid4().hex


@contextmanager
def request_scope(request_id: str) -> Iterator[str]:
    token = request_id_var.set(request_id)
    try:
        yield request_id
    finally:
        request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id in scope, or '-'."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        return True


# Libraries that log every request at INFO, noise next to the call gate's own line per call:
# httpx, one line per backend call; the MCP SDK's transport, "Terminating session: None" after
# every stateless request (py-spy: a fifth of the gateway's CPU under a tools/list flood).
_PER_REQUEST_LOGGERS = ("httpx", "mcp.server.streamable_http")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.NOTSET  # DEBUG: all
    for name in _PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(max(quiet, root.level))
