"""Ids as clients send them, and the objects a client can fetch again by id (`node`)."""

from __future__ import annotations

import uuid

import strawberry

NO_SUCH_ID = uuid.UUID(int=0)


@strawberry.interface(
    description="An object `node(id:)` fetches again by its id (Relay's object identification). "
    "Ids are unique across every type."
)
class Node:
    id: strawberry.ID


def parse_id(raw: strawberry.ID | str) -> uuid.UUID:
    """The UUID a client sent; a malformed one becomes an id that matches nothing, so it gets
    the same answer as an unknown one."""
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return NO_SUCH_ID
