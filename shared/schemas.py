"""Pydantic shapes shared by the backend's REST API and the gateway's tools."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    MISSING,
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.rules import DESCRIPTION_MAX, PASSWORD_MAX, PASSWORD_MIN, TITLE_MAX


def storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8."""
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain the NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("invalid_unicode", "must be valid Unicode text") from None
    return value


def _none_if_empty(value: str | None) -> str | None:
    return value or None


# The one definition of each text field, for the REST API and the tools alike: the bounds apply
# after the surrounding whitespace is trimmed, wherever the value is checked first.
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX),
    AfterValidator(storable),
    Field(description=f"Short title, 1 to {TITLE_MAX} characters; surrounding spaces are trimmed."),
]
# An empty description is stored as null.
Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=DESCRIPTION_MAX),
    AfterValidator(storable),
    Field(description=f"Details, up to {DESCRIPTION_MAX} characters."),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Strict):
    email: EmailStr
    # Any characters: the password is only ever hashed, never stored or compared as text.
    password: Annotated[str, StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]


class UserOut(BaseModel):
    id: int
    email: str
    created_at: datetime


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class TaskCreate(Strict):
    title: Annotated[
        Title,
        Field(
            description=f"Short title, 1 to {TITLE_MAX} characters; surrounding spaces are trimmed."
        ),
    ]
    description: Annotated[
        Description | None,
        AfterValidator(_none_if_empty),
        Field(description=f"Details, up to {DESCRIPTION_MAX} characters."),
    ] = None


class TaskUpdate(Strict):
    """A partial update: only the fields sent change. `description: null` clears it."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    # MISSING (left out) means unchanged; title and completed cannot be null.
    title: Annotated[
        Title | MISSING, Field(description="New title; omit to keep the current one.")
    ] = MISSING
    description: Annotated[
        Annotated[Description | None, AfterValidator(_none_if_empty)] | MISSING,
        Field(description='New details; omit to keep them, or pass "" or null to remove them.'),
    ] = MISSING
    completed: Annotated[  # true or false, not 0, 1 or "yes"
        StrictBool | MISSING, Field(description="true marks the task done, false reopens it.")
    ] = MISSING

    @model_validator(mode="after")
    def _changes_something(self) -> TaskUpdate:
        if not self.model_fields_set:
            raise PydanticCustomError(
                "empty_update", "send at least one of title, description, completed"
            )
        return self


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    title: str
    description: str | None
    completed: bool
    created_at: datetime
    updated_at: datetime


class TaskPage(BaseModel):
    tasks: list[TaskOut]
    next_cursor: str | None = None


class UserStats(BaseModel):
    total: int
    completed: int
    pending: int
