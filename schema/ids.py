"""Ids as clients send them."""

from __future__ import annotations

import uuid

import strawberry

NO_SUCH_ID = uuid.UUID(int=0)


def parse_id(raw: strawberry.ID | str) -> uuid.UUID:
    """The UUID a client sent; a malformed one becomes an id that matches nothing, so it gets
    the same answer as an unknown one."""
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return NO_SUCH_ID
