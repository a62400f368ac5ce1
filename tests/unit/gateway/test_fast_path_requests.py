"""Requests the fast path must hand to the SDK untouched, whatever their headers hold."""

from __future__ import annotations

from starlette.types import Message, Scope

from gateway.fast_path import FastPath, ToolResponder
from gateway.sdk_fence import token_verifier
from gateway.server import build_server, transport_security
from shared.settings import Settings


async def test_a_content_length_that_is_not_ascii_digits_goes_to_the_sdk() -> None:
    settings = Settings(_env_file=None)
    server, ref = build_server(settings)
    responder = ToolResponder(
        settings, server, ref, token_verifier(server), transport_security(settings), {}, ()
    )
    responder.enabled = True  # as its start-up self-test leaves it
    reached: list[Scope] = []

    async def sdk(scope: Scope, receive: object, send: object) -> None:
        reached.append(scope)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        raise AssertionError(f"the fast path answered: {message}")

    # Latin-1 header bytes: '²' and '³' pass str.isdigit() and fail int(); then Arabic-Indic 3.
    lengths = [b"\xb2", b"1\xb3", "\u0663".encode(), b"+2", b"-1", b"2 "]
    for length in lengths:
        scope = {
            "type": "http",
            "method": "POST",
            "path": settings.mcp_path,
            "root_path": "",
            "headers": [(b"content-length", length), (b"content-type", b"application/json")],
        }
        await FastPath(sdk, responder)(scope, receive, send)
    assert len(reached) == len(lengths)
