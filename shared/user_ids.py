"""The caller's user id, of the kind the app's owner columns hold: the one home of its rule.

An app spec's owner columns decide the kind, once (readmodel.reads checks that they agree):
integer columns mean integer ids (the task service, the notes example), UUID columns mean UUID
ids (fastapi/full-stack-fastapi-template). A kind parses an id from what a caller sends (a JWT
claim, trusted mode's `user_id` argument) into its one spelling, describes it for the input
schema, and binds it for SQL. Everything keyed by user (cache keys, read marks, rate limits)
sees that spelling, so one user is one key whichever spelling reached the gateway.
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema
from sqlalchemy import Integer, TypeDecorator, Uuid
from sqlalchemy.types import TypeEngine

from shared.rules import MAX_ID

# An int id, or a UUID as its canonical lower-case text (36 characters, hyphenated).
UserId = int | str

_ACTS_FOR = "The id of the user you act for (trusted mode: the gateway believes it)."
# The longest decimal spelling of an id within MAX_ID.
_MAX_ID_DIGITS = len(str(MAX_ID))
# The canonical spelling only: uuid.UUID() also takes braces, a urn: prefix and no hyphens,
# each of which would be a second cache key, mark and bucket for one user.
_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class UserIds(ABC):
    """One kind of user id. Stateless: the two kinds are the module's constants."""

    name: str  # as messages name the kind
    # What a refused id must be, for the agent: in a validator's message, in trusted mode's
    # refusal ("user_id must be <spelling>") and in its details.
    must_be: str
    spelling: str
    expected: str

    @abstractmethod
    def parse(self, value: object) -> UserId | None:
        """The id `value` spells, in the kind's one spelling; None for anything else."""

    @abstractmethod
    def bind(self, user_id: UserId) -> object:
        """The id as the owner column's SQL parameter."""

    @abstractmethod
    def argument(self) -> Any:
        """Trusted mode's `user_id` parameter: a type the MCP SDK builds the input schema from
        and validates with this kind's rule."""

    def required(self, value: object) -> UserId:
        """The parsed id, or ValueError saying what it must be (pydantic's validators)."""
        user_id = self.parse(value)
        if user_id is None:
            raise ValueError(f"must be {self.must_be}")
        return user_id


class IntUserIds(UserIds):
    name = "integer"
    must_be = f"a JSON integer or a string of ASCII digits, 1 to {MAX_ID}"
    spelling = "a JSON integer or a string of ASCII digits"
    expected = f"an integer from 1 to {MAX_ID}"

    def parse(self, value: object) -> int | None:
        """A JSON integer or a string of ASCII digits, within 1..MAX_ID. Nothing else:
        pydantic's lax mode would take 3.0 and true (user 1) too."""
        if type(value) is int:
            user_id = value
        elif (
            isinstance(value, str)
            and 0 < len(value) <= _MAX_ID_DIGITS
            and value.isascii()
            and value.isdigit()
        ):
            user_id = int(value)
        else:
            return None
        return user_id if 1 <= user_id <= MAX_ID else None

    def bind(self, user_id: UserId) -> object:
        return user_id

    def argument(self) -> Any:
        return Annotated[int, BeforeValidator(self.required), Field(description=_ACTS_FOR)]


class UuidUserIds(UserIds):
    name = "UUID"
    must_be = "a UUID string, 8-4-4-4-12 hexadecimal digits"
    spelling = "a UUID string"
    expected = "a UUID such as 4f1c2b8e-6a3d-4e5f-9b7a-0c1d2e3f4a5b, in any case"

    def parse(self, value: object) -> str | None:
        """A UUID in its canonical hyphenated spelling, any case, as lower-case text."""
        if type(value) is str and len(value) == 36 and _UUID_TEXT.fullmatch(value):
            return value.lower()
        return None

    def bind(self, user_id: UserId) -> object:
        return uuid.UUID(str(user_id))

    def argument(self) -> Any:
        return Annotated[
            str,
            BeforeValidator(self.required),
            WithJsonSchema({"type": "string", "format": "uuid"}),
            Field(description=_ACTS_FOR),
        ]


INT_IDS = IntUserIds()
UUID_IDS = UuidUserIds()


def parse_as_any(kinds: Iterable[UserIds], value: object) -> UserId | None:
    """The id `value` spells in the first of `kinds` that takes it; None when none does."""
    for kind in kinds:
        user_id = kind.parse(value)
        if user_id is not None:
            return user_id
    return None


def user_ids_for(sql_type: TypeEngine[Any]) -> UserIds | None:
    """The kind of id an owner column of this SQL type holds; None for another type (a name).

    Integer and BigInteger mean integer ids, sqlalchemy.Uuid and postgresql.UUID (either
    as_uuid) UUID ids; a type whose python_type is unknown gets integers, as before."""
    if isinstance(sql_type, TypeDecorator):
        sql_type = sql_type.impl_instance
    if isinstance(sql_type, Uuid):
        return UUID_IDS
    if isinstance(sql_type, Integer):
        return INT_IDS
    try:
        held = sql_type.python_type
    except NotImplementedError:
        return INT_IDS
    return {int: INT_IDS, uuid.UUID: UUID_IDS}.get(held)
