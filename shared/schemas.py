"""Pydantic shapes shared by the backend's REST API and the gateway's tools."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, StringConstraints

TITLE_MAX = 200
DESCRIPTION_MAX = 1000

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX)]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX)]
Status = Literal["all", "pending", "completed"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Strict):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=8, max_length=128)]


class UserOut(BaseModel):
    id: int
    email: str
    created_at: datetime


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class TaskCreate(Strict):
    title: Title
    description: Description | None = None


class TaskUpdate(Strict):
    title: Title | None = None
    description: Description | None = None
    completed: bool | None = None


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
