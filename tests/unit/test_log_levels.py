"""Libraries that log every request at INFO stay quiet at INFO, and speak again at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared.logs import configure_logging

SDK_TRANSPORT = "mcp.server.streamable_http"  # "Terminating session: None" after each request


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in (SDK_TRANSPORT, "httpx")}
    yield
    root.handlers[:], root.level = handlers, level
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def test_at_info_the_per_request_lines_of_libraries_are_dropped_and_ours_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", as_json=False)
    logging.getLogger(SDK_TRANSPORT).info("Terminating session: None")
    logging.getLogger("httpx").info("HTTP Request: POST http://backend/api/v1/tasks")
    logging.getLogger(SDK_TRANSPORT).warning("a transport warning")
    logging.getLogger("gateway.call_gate").info("a tool call")
    err = capsys.readouterr().err
    assert "Terminating session" not in err and "HTTP Request" not in err
    assert "a transport warning" in err and "a tool call" in err


def test_at_debug_they_are_logged(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", as_json=False)
    logging.getLogger(SDK_TRANSPORT).info("Terminating session: None")
    assert "Terminating session" in capsys.readouterr().err
