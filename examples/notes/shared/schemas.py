"""The notes app's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(min_length=1, max_length=80, description="The note's title.")]
    body: Annotated[str, Field(max_length=10_000, description="The note's text.")] = ""


class NoteChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str | None, Field(min_length=1, max_length=80)] = None
    body: Annotated[str | None, Field(max_length=10_000)] = None


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    body: str
    created_at: datetime


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$", description="Lower-case, a-z 0-9 -.")]


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    note_id: int
    name: str


class TaggedNote(BaseModel):
    """A note with one of its tags (what notes_tagged answers)."""

    id: int
    title: str
    created_at: datetime
    tag: str
