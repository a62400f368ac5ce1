"""/authorize errors go back to a client's redirect URI only once a person has logged in
through that client.

OAuth sends most /authorize errors (a bad scope, a missing PKCE challenge) to the redirect URI.
For a client that anyone may register with any https URI, that makes /authorize an open
redirect that needs no login: a link on our host that lands on the attacker's page. Until a
login has completed through the client, such an error for a redirect off this machine is
answered here instead (400, the OAuth error fields and the envelope), and the browser stays on
our host.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.oauth.clients import LOOPBACK_HOSTS
from backend.oauth.registration import is_verified
from shared.asgi_body import send_json

_REDIRECTS = frozenset({302, 303, 307})


def _error_of(start: Message) -> str | None:
    """The OAuth `error` a redirect carries to a client off this machine, if it is one.

    An error for a loopback redirect URI (a native app's listener, RFC 8252) goes back as OAuth
    says: it cannot take the browser to another site, and the app needs it to tell its user.
    """
    if start["status"] not in _REDIRECTS:
        return None
    for name, value in start.get("headers", []):
        if name.lower() == b"location":
            target = urlsplit(value.decode("latin-1"))
            if target.scheme == "http" and (target.hostname or "") in LOOPBACK_HOSTS:
                return None
            errors = parse_qs(target.query).get("error")
            return errors[0] if errors else None
    return None


class NoErrorRedirectBeforeLogin:
    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self._state = state  # the app's state: its `sessions` exist once the lifespan runs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        client_id = (query.get("client_id") or [""])[0]
        held: Message | None = None

        async def checking_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                error = _error_of(message)
                if error is not None and not await self._verified(client_id):
                    held = message
                    await _send_error_here(send, error)
                    return
            if held is None:
                await send(message)

        await self.app(scope, receive, checking_send)

    async def _verified(self, client_id: str) -> bool:
        if not client_id:
            return False  # a POSTed /authorize: the client is not known here
        sessions: async_sessionmaker[AsyncSession] = self._state.sessions
        async with sessions() as session:
            return await is_verified(session, client_id)


async def _send_error_here(send: Send, error: str) -> None:
    body = json.dumps(
        {
            "error": error,
            "error_description": (
                f"the authorization request is not valid ({error}); this client has not "
                "completed a login yet, so the error is shown here instead of at its redirect URI"
            ),
        }
    ).encode()
    await send_json(send, 400, body, ((b"cache-control", b"no-store"),))
