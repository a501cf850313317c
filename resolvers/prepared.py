"""Prepare, then write: how a use case with slow work hands its edge the write that is left.

Such a use case is called with `Reads` (short read-only sessions) instead of a transaction. It
checks, asks the rate limiter, reads what it needs and hashes or verifies passwords first, and
returns `Prepared`: its write, which the edge runs in the unit of work it opens only then (and
commits or rolls back, as for any use case), and what to do once that write has committed. So no
transaction waits on argon2 or the network: on SQLite it would hold the only writer, on
PostgreSQL a pooled connection. The write reads again, under its lock, whatever may have changed
in between.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from models import Database

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# A read session for the moment it is used; what it reads is never committed.
Reads = Callable[[], AbstractAsyncContextManager[AsyncSession]]


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Prepared(Generic[T_co]):
    """A use case whose slow work is done: the write left to run in a unit of work, and what to
    do after it has committed (telling the rate limiter of a success, which must not count for a
    write that was rolled back)."""

    write: Callable[[AsyncSession], Awaitable[T_co]]
    then: Callable[[], Awaitable[None]] = _nothing


async def carry_out(database: Database, prepared: Prepared[T]) -> T:
    """The unit of work of a use case prepared outside it, for an edge without a GraphQL
    context (a page's form): its write, committed, then what follows it."""
    async with database.transaction() as session:
        written = await prepared.write(session)
    await prepared.then()
    return written
