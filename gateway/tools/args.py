"""Tool arguments that several tools take: the shared rule, described for the model."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.rules import TaskId

TaskIdArg = Annotated[TaskId, Field(description="The task's id, as returned by the other tools.")]
