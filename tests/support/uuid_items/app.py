"""The app: its own auth, unaware of MCP. A caller is the UUID in the `sub` of an HS256 JWT
signed with ITEMS_SECRET; or the service account's session cookie plus X-Acting-User (a UUID);
and it answers the RFC 8693 token exchange taskgate's gateway speaks (POST /token)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, Form, Header, HTTPException, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from taskgate.fastapi import install_commit_lsn
from tests.support.uuid_items.models import Item, ItemIn, ItemOut

SESSION_COOKIE = "items_session"
HEALTH_PATH = "/api/v1/utils/health-check/"  # the template's
_sessions: set[str] = set()
engine = create_async_engine(os.environ.get("DATABASE_URL", "postgresql+asyncpg:///items"))
sessions = async_sessionmaker(engine, expire_on_commit=False)


def _secret() -> str:
    return os.environ["ITEMS_SECRET"]


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(title="uuid items", lifespan=lifespan)
install_commit_lsn(app, engine)


async def db() -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


def caller(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_acting_user: Annotated[uuid.UUID | None, Header()] = None,
) -> uuid.UUID:
    if request.cookies.get(SESSION_COOKIE) in _sessions and x_acting_user is not None:
        return x_acting_user
    _scheme, _, token = (authorization or "").partition(" ")
    try:  # as the template's deps.get_current_user reads its token
        return uuid.UUID(jwt.decode(token, _secret(), algorithms=["HS256"])["sub"])
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not signed in") from None


Caller = Annotated[uuid.UUID, Depends(caller)]
Db = Annotated[AsyncSession, Depends(db)]


@app.post("/api/v1/items/", status_code=201, operation_id="create_item", tags=["items"])
async def create_item(data: ItemIn, user: Caller, session: Db) -> ItemOut:
    """Create an item."""
    item = Item(owner_id=user, title=data.title)
    session.add(item)
    await session.commit()
    await session.refresh(item)
    return ItemOut.model_validate(item)


@app.delete("/api/v1/items/{item_id}", status_code=204, operation_id="delete_item", tags=["items"])
async def delete_item(item_id: uuid.UUID, user: Caller, session: Db) -> Response:
    """Delete one of your items."""
    item = await session.get(Item, item_id)
    if item is None or item.owner_id != user:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Item not found")
    await session.delete(item)
    await session.commit()
    return Response(status_code=204)


@app.post("/service/login", include_in_schema=False)
async def service_login(
    username: Annotated[str, Form()], password: Annotated[str, Form()], response: Response
) -> dict[str, bool]:
    expected = f"{os.environ['ITEMS_SERVICE_USER']}\n{os.environ['ITEMS_SERVICE_PASSWORD']}"
    if not secrets.compare_digest(f"{username}\n{password}", expected):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong service credentials")
    session_id = secrets.token_urlsafe(24)
    _sessions.add(session_id)
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True)
    return {"ok": True}


@app.post("/token", include_in_schema=False)
async def exchange(
    subject_token: Annotated[str, Form()],
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, object]:
    """RFC 8693 token exchange for taskgate's gateway client (its secret derived from ours)."""
    client = hmac.new(_secret().encode(), b"oauth-client-secret:taskgate-gateway", hashlib.sha256)
    basic = base64.b64encode(f"taskgate-gateway:{client.hexdigest()}".encode()).decode()
    if not secrets.compare_digest(authorization or "", f"Basic {basic}"):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown client")
    try:
        sub = str(uuid.UUID(jwt.decode(subject_token, _secret(), algorithms=["HS256"])["sub"]))
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid_grant") from None
    token = jwt.encode({"sub": sub, "exp": int(time.time()) + 300}, _secret(), "HS256")
    return {"access_token": token, "token_type": "Bearer", "expires_in": 300}


@app.get(HEALTH_PATH, include_in_schema=False)
async def health() -> bool:
    return True
