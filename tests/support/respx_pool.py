"""The pool respx mocks, for unit tests of the gateway's HTTP mapping."""

from __future__ import annotations

import httpx


def respx_pool() -> httpx.AsyncHTTPTransport:
    """httpx's own pool, which respx patches; the gateway's aiohttp pool is tested on real
    sockets (tests/integration/gateway/test_backend_transport.py)."""
    return httpx.AsyncHTTPTransport()
