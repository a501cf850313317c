"""The outbox core the mail and webhook channels share: claiming due rows under a lease, the
backoff schedule, recording an attempt's outcome, and the report a run returns.

A channel says which rows are due, what a claim stores and what an outcome means for it; the
core takes care that two workers never hold one row, that a worker whose claim was lost records
nothing, and when a failed row is tried again. Each step runs in a transaction the worker opens;
these only execute statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Self

from sqlalchemy import ColumnElement, Select, or_, update
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute


@dataclass(frozen=True)
class Backoff:
    """When to try again after a failed attempt: doubling from `first` up to `cap`, and with
    `attempts`, no more than that many tries in all (None: never give up)."""

    first: timedelta
    cap: timedelta
    attempts: int | None = None

    def delay(self, made: int) -> timedelta:
        """How long to wait after `made` attempts, all failed."""
        doublings = 2 ** max(made - 1, 0)
        # Compared before multiplying: after enough attempts `first * doublings` is more than a
        # timedelta can hold.
        return self.cap if doublings >= self.cap / self.first else self.first * doublings

    def retry_at(self, now: datetime, made: int) -> datetime | None:
        """After `made` attempts, all failed: the time of the next, or None to give up."""
        if self.attempts is not None and made >= self.attempts:
            return None
        return now + self.delay(made)


def unleased(claimed_at: InstrumentedAttribute[Any], now: datetime, lease: timedelta) -> Any:
    """Held by no worker, or by one whose lease has run out (it stopped: a live worker finishes
    far sooner)."""
    return or_(claimed_at.is_(None), claimed_at <= now - lease)


async def claim(
    session: AsyncSession,
    candidates: Select[Any],
    *,
    id_column: InstrumentedAttribute[Any],
    still_free: ColumnElement[bool],
    claimed: dict[str, Any],
    returning: Any,
) -> Sequence[Any]:
    """Take the rows `candidates` (a query of ids) picks, storing `claimed` on each, and return
    `returning` of those taken: two statements whatever their number.

    On PostgreSQL the candidates are read FOR UPDATE SKIP LOCKED, so a worker passes over what
    another is claiming instead of waiting for it (SQLite has no such clause: its write lock
    serialises the step). The UPDATE is conditional on `still_free` either way, so a row another
    worker claimed in between is not taken twice.
    """
    ids = (await session.scalars(candidates.with_for_update(skip_locked=True))).all()
    if not ids:
        return []
    taken = await session.scalars(
        update(id_column.class_)
        .where(id_column.in_(ids), still_free)
        .values(claimed)
        .returning(returning),
        execution_options={"synchronize_session": False},
    )
    return taken.all()


async def settle(
    session: AsyncSession,
    attempts: InstrumentedAttribute[int],
    *,
    held: ColumnElement[bool],
    outcome: dict[str, Any],
) -> bool:
    """Record one attempt on a row (`attempts` is its counter): one more made, the claim
    released, and the channel's `outcome` written. Only while `held` says this worker's claim
    still stands; whether it did."""
    result = await session.execute(
        update(attempts.class_)
        .where(held)
        .values({attempts.key: attempts + 1, "claimed_at": None, **outcome})
        .execution_options(synchronize_session=False)
    )
    return changed(result) > 0


def changed(result: Result[Any]) -> int:
    """How many rows a statement wrote (0 where the driver does not say)."""
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Report:
    """What a channel's run did, in numbers: reports of steps add up field by field."""

    def __add__(self, other: Self) -> Self:
        names = [each.name for each in fields(self)]
        return type(self)(**{name: getattr(self, name) + getattr(other, name) for name in names})


def worker_name() -> str:
    """A name no other worker has, for claims and logs: host, process and a random part."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def idle(stop: asyncio.Event | None, seconds: float) -> None:
    """Wait between steps when nothing was due: `seconds`, or less when asked to stop."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
