"""The notes app, as taskgate's gateway serves it: `--app notes_spec:SPEC` from this folder."""

import os
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import select

from shared.models import Base, Note, Tag
from shared.schemas import NoteOut, TaggedNote
from taskgate.spec import (
    AppSpec,
    Identity,
    Rename,
    ServiceSession,
    SignedJwt,
    TokenExchange,
    Writes,
)

AUTH = {  # how the gateway calls the app; the tests try each
    "signed": SignedJwt(secret_env="NOTES_SECRET", claim="uid"),
    "session": ServiceSession("/service/login", "NOTES_SERVICE_USER", "NOTES_SERVICE_PASSWORD"),
    "exchange": TokenExchange(),
}
NEWEST_FIRST = (Note.created_at.desc(), Note.id.desc())

SPEC = AppSpec(
    name="notes",
    openapi="backend.main:app",
    owners={Note: Note.owner_id, Tag: Tag.owner_id},
    metadata=Base.metadata,
    instructions="Write notes and tag them; read them back, newest first.",
    identity=Identity(claim="uid", secret_env="NOTES_SECRET"),
    backend_auth=AUTH[os.environ.get("NOTES_GATEWAY_AUTH", "signed")],
    writes=Writes(
        include_tags=["notes", "tags"],
        tools={"untag": Rename(name="remove_tag", description="Take a tag off its note.")},
    ),
)


@SPEC.page(NoteOut, order=NEWEST_FIRST, items="notes", title="Your notes")
def list_notes() -> Any:
    """Your notes, newest first. Pass next_cursor back for the next page."""
    return select(Note.id, Note.title, Note.body, Note.created_at)


@SPEC.page(TaggedNote, order=NEWEST_FIRST, items="notes", title="Notes by tag")
def notes_tagged(tag: Annotated[str, Field(max_length=40, description="The tag's name.")]) -> Any:
    """Your notes that carry a tag, newest first."""
    query = select(Note.id, Note.title, Note.created_at, Tag.name.label("tag"))
    return query.join(Tag, Tag.note_id == Note.id).where(Tag.name == tag)


@SPEC.one(NoteOut, title="Get a note", missing="note {note_id} not found")
def get_note(note_id: Annotated[int, Field(ge=1, description="The note's id.")]) -> Any:
    """One of your notes by id."""
    return select(Note.id, Note.title, Note.body, Note.created_at).where(Note.id == note_id)
