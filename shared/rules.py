"""Each rule of the task service, defined once: the bounds, the statuses and the read tools.

The backend's routes, the gateway's tools and the read model import these, so a bound changed
here changes at every edge, and a new read tool is known wherever tools are named.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

# Ids are PostgreSQL bigints; anything outside cannot name a task or a user.
MAX_ID = 2**63 - 1
TaskId = Annotated[
    int, Field(ge=1, le=MAX_ID, description="The task's id, as returned by the other tools.")
]

# Tasks per page of list_tasks and GET /tasks.
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 200, 50
PageLimit = Annotated[int, Field(ge=LIMIT_MIN, le=LIMIT_MAX)]
# A cursor this encodes is far shorter; a longer one is refused before it is decoded.
CURSOR_MAX = 200

TITLE_MAX = 200
DESCRIPTION_MAX = 1000
# Accounts: an email as long as RFC 5321 allows; a password that is only ever hashed.
EMAIL_MAX = 320
PASSWORD_MIN, PASSWORD_MAX = 8, 128
# An Idempotency-Key header: as long as the column that keeps it.
IDEMPOTENCY_KEY_MAX = 200

Status = Literal["all", "pending", "completed"]
STATUSES: tuple[Status, ...] = get_args(Status)
# What a list shows when the caller names no status.
STATUS_DEFAULT: Status = "all"
