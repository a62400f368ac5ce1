"""The UUID items app as taskgate serves it: UUID owner columns make the user ids UUIDs."""

from __future__ import annotations

import os
import uuid
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import func, select

from taskgate.spec import (
    AppSpec,
    BackendAuth,
    Identity,
    ServiceSession,
    SignedJwt,
    TokenExchange,
    Writes,
)
from tests.support.uuid_items.models import Base, Item, ItemCount, ItemOut

AUTH: dict[str, BackendAuth] = {  # how the gateway calls the app; the tests try each
    "signed": SignedJwt(secret_env="ITEMS_SECRET"),
    "session": ServiceSession("/service/login", "ITEMS_SERVICE_USER", "ITEMS_SERVICE_PASSWORD"),
    "exchange": TokenExchange(),
}
NEWEST_FIRST = (Item.created_at.desc(), Item.id.desc())

SPEC = AppSpec(
    name="uuid-items",
    openapi="tests.support.uuid_items.app:app",
    owners={Item: Item.owner_id},
    metadata=Base.metadata,
    health_path="/api/v1/utils/health-check/",
    identity=Identity(secret_env="ITEMS_SECRET"),
    backend_auth=AUTH[os.environ.get("ITEMS_GATEWAY_AUTH", "signed")],
    writes=Writes(include_tags=["items"]),
)


@SPEC.page(ItemOut, order=NEWEST_FIRST, items="items", title="Your items")
def list_items() -> Any:
    """Your items, newest first. Pass next_cursor back for the next page."""
    return select(Item.id, Item.title, Item.created_at)


@SPEC.one(ItemOut, title="Get an item", missing="item {item_id} not found")
def get_item(item_id: Annotated[uuid.UUID, Field(description="The item's id.")]) -> Any:
    """One of your items by id."""
    return select(Item.id, Item.title, Item.created_at).where(Item.id == item_id)


@SPEC.row(ItemCount, title="Count your items")
def count_items() -> Any:
    """How many items you have."""
    return select(func.count(Item.id).label("items"))
