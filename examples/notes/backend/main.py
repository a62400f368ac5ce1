"""The notes app: a plain FastAPI app with its own auth, unaware of MCP.

Callers authenticate with an HS256 JWT signed with NOTES_SECRET whose `uid` claim is their user
id; or, as the service account (NOTES_SERVICE_USER / NOTES_SERVICE_PASSWORD), with the session
cookie of POST /service/login plus the acting user's id in X-Acting-User. It also answers the
RFC 8693 token exchange taskgate's gateway speaks (POST /token), for the third way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Form, Header, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from shared.models import Note, Tag
from shared.schemas import NoteChange, NoteIn, NoteOut, TagIn, TagOut
from taskgate.fastapi import install_commit_lsn

SESSION_COOKIE = "notes_session"
_sessions: set[str] = set()  # service sessions; a real app keeps them in its database
# Created here, connected on first use.
engine = create_async_engine(os.environ.get("DATABASE_URL", "postgresql+asyncpg:///notes"))
sessions = async_sessionmaker(engine, expire_on_commit=False)


def _secret() -> str:
    return os.environ["NOTES_SECRET"]


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(title="notes", lifespan=lifespan)
install_commit_lsn(app, engine, commit_lsn=os.environ.get("NOTES_COMMIT_LSN", "1") == "1")


async def db() -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


def caller(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_acting_user: Annotated[int | None, Header()] = None,
) -> int:
    if request.cookies.get(SESSION_COOKIE) in _sessions and x_acting_user is not None:
        return x_acting_user
    _scheme, _, token = (authorization or "").partition(" ")
    try:
        return int(jwt.decode(token, _secret(), algorithms=["HS256"])["uid"])
    except (jwt.InvalidTokenError, KeyError, ValueError):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not signed in") from None


Caller = Annotated[int, Depends(caller)]
Db = Annotated[AsyncSession, Depends(db)]


async def _own_note(session: AsyncSession, user: int, note_id: int) -> Note:
    note = await session.get(Note, note_id)
    if note is None or note.owner_id != user:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"note {note_id} not found")
    return note


@app.post("/notes", status_code=201, operation_id="create_note", tags=["notes"])
async def create_note(data: NoteIn, user: Caller, session: Db) -> NoteOut:
    """Write a new note."""
    note = Note(owner_id=user, title=data.title, body=data.body)
    session.add(note)
    await session.commit()
    return NoteOut.model_validate(note)


@app.patch("/notes/{note_id}", operation_id="edit_note", tags=["notes"])
async def edit_note(note_id: int, data: NoteChange, user: Caller, session: Db) -> NoteOut:
    """Change a note's title or text."""
    note = await _own_note(session, user, note_id)
    for field, value in data.model_dump(exclude_none=True).items():
        setattr(note, field, value)
    await session.commit()
    return NoteOut.model_validate(note)


@app.delete("/notes/{note_id}", status_code=204, operation_id="delete_note", tags=["notes"])
async def delete_note(note_id: int, user: Caller, session: Db) -> Response:
    """Delete a note and its tags."""
    await session.delete(await _own_note(session, user, note_id))
    await session.commit()
    return Response(status_code=204)


@app.post(
    "/notes/{note_id}/tags",
    status_code=201,
    response_model=TagOut,
    operation_id="tag_note",
    tags=["tags"],
)
async def tag_note(note_id: int, data: TagIn, user: Caller, session: Db) -> Any:
    """Put a tag on a note."""
    await _own_note(session, user, note_id)
    tag = Tag(owner_id=user, note_id=note_id, name=data.name)
    session.add(tag)
    try:
        await session.commit()
    except IntegrityError:
        message = f"the note already has the tag {data.name}"
        envelope = {"status": "error", "error_code": "conflict", "message": message, "details": {}}
        return JSONResponse(envelope, status_code=409)
    return TagOut.model_validate(tag)


@app.delete("/tags/{tag_id}", status_code=204, operation_id="untag", tags=["tags"])
async def untag(tag_id: int, user: Caller, session: Db) -> Response:
    """Take a tag off its note."""
    await session.execute(delete(Tag).where(Tag.id == tag_id, Tag.owner_id == user))
    await session.commit()
    return Response(status_code=204)


@app.get("/notes", operation_id="list_notes", tags=["notes"])
async def list_notes(user: Caller, session: Db) -> list[NoteOut]:
    """The caller's notes (the gateway serves its own read tools instead)."""
    rows = await session.scalars(select(Note).where(Note.owner_id == user))
    return [NoteOut.model_validate(n) for n in rows]


@app.post("/service/login", include_in_schema=False)
async def service_login(
    username: Annotated[str, Form()], password: Annotated[str, Form()], response: Response
) -> dict[str, bool]:
    expected = (
        os.environ.get("NOTES_SERVICE_USER", ""),
        os.environ.get("NOTES_SERVICE_PASSWORD", ""),
    )
    if not all(expected) or not secrets.compare_digest(
        f"{username}\n{password}", "\n".join(expected)
    ):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong service credentials")
    session_id = secrets.token_urlsafe(24)
    _sessions.add(session_id)
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True)
    return {"ok": True}


@app.post("/token", include_in_schema=False)
async def exchange(
    subject_token: Annotated[str, Form()],
    grant_type: Annotated[str, Form()],
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, object]:
    """RFC 8693 token exchange for taskgate's gateway client (its secret derived from ours)."""
    client = hmac.new(_secret().encode(), b"oauth-client-secret:taskgate-gateway", hashlib.sha256)
    basic = base64.b64encode(f"taskgate-gateway:{client.hexdigest()}".encode()).decode()
    if not secrets.compare_digest(authorization or "", f"Basic {basic}"):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown client")
    try:
        uid = int(jwt.decode(subject_token, _secret(), algorithms=["HS256"])["uid"])
    except (jwt.InvalidTokenError, KeyError, ValueError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid_grant") from None
    token = jwt.encode({"uid": uid, "exp": int(time.time()) + 300}, _secret(), "HS256")
    return {"access_token": token, "token_type": "Bearer", "expires_in": 300}


@app.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
