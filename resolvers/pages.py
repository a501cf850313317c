"""Pages of the lists that can grow: a capped `first`, and cursors that stay valid as rows arrive.

A cursor names a position in a fixed order (keyset pagination, never OFFSET): the values of the
order's columns at the last row seen, the last column unique. The next page is the rows beyond it,
so rows added or removed elsewhere neither repeat nor skip a row.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    TypeDecorator,
    and_,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from resolvers.errors import ErrorCode, Rejected

MAX_PAGE = 100
T = TypeVar("T")
# The largest value an INTEGER or a BIGINT column holds: a cursor past it can point at no row.
_LARGEST = {False: 2**31 - 1, True: 2**63 - 1}


def checked_first(first: int) -> int:
    """`first` as asked, or a refusal when it is outside 1 to MAX_PAGE."""
    if not 1 <= first <= MAX_PAGE:
        raise Rejected.one(ErrorCode.INVALID_INPUT, f"Ask for 1 to {MAX_PAGE} at a time.", "first")
    return first


def _encode(kind: str, *parts: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{'|'.join(parts)}".encode()).decode()


def _not_ours() -> Rejected:
    return Rejected.one(
        ErrorCode.INVALID_INPUT, "The cursor is not one this API gave out.", "after"
    )


def _decode(kind: str, cursor: str, parts: int) -> list[str]:
    """The parts of a cursor of this kind, or a refusal for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeError, binascii.Error):
        raise _not_ours() from None
    prefix, _, rest = text.partition(":")
    values = rest.split("|")
    if prefix != kind or len(values) != parts:
        raise _not_ours()
    return values


@dataclass(frozen=True)
class Keyset:
    """An order over model columns, the last of them unique, and the cursors that name positions
    in it."""

    kind: str
    columns: tuple[InstrumentedAttribute[Any], ...]
    descending: bool

    def order(self, of: Any = None) -> list[ColumnElement[Any]]:
        """ORDER BY terms, on the model or on an alias of it (`of`)."""
        columns = [getattr(of, c.key) if of is not None else c for c in self.columns]
        return [column.desc() if self.descending else column.asc() for column in columns]

    def cursor(self, row: object) -> str:
        return _encode(self.kind, *(_text(getattr(row, c.key)) for c in self.columns))

    def position(self, cursor: str) -> tuple[Any, ...]:
        """The column values a cursor names; a refusal for one this keyset did not give out."""
        parts = _decode(self.kind, cursor, len(self.columns))
        try:
            return tuple(_value(c, part) for c, part in zip(self.columns, parts, strict=True))
        except (ValueError, OverflowError):
            raise _not_ours() from None

    def beyond(self, position: Sequence[Any]) -> ColumnElement[bool]:
        """Rows after the position in this order: (a, b) > (x, y) written out, as SQLite and
        PostgreSQL both understand it and both can use an index for it."""
        column, *rest = self.columns
        value, *rest_values = position
        past = column < value if self.descending else column > value
        if not rest:
            return past
        tail = Keyset(self.kind, tuple(rest), self.descending).beyond(rest_values)
        return or_(past, and_(column == value, tail))


def _text(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def _value(column: InstrumentedAttribute[Any], text: str) -> object:
    stored = column.type
    if isinstance(stored, TypeDecorator):
        stored = stored.impl_instance
    kind = stored.python_type
    if kind is datetime:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError("a cursor's time is always UTC")
        return moment
    if kind is uuid.UUID:
        return uuid.UUID(text)
    if kind is int:
        if not text.isdigit() or int(text) > _LARGEST[isinstance(stored, BigInteger)]:
            raise ValueError("not a position in this list")
        return int(text)
    raise ValueError(f"no cursor for a column of {kind}")


@dataclass(frozen=True)
class PageRequest:
    """What a client asked for: how many, and after which position (checked and decoded)."""

    first: int
    after: tuple[Any, ...] | None = None


def page_request(first: int, after: str | None, keyset: Keyset) -> PageRequest:
    """Check `first` and decode `after`, before anything is read."""
    return PageRequest(checked_first(first), keyset.position(after) if after is not None else None)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_next_page: bool
    keyset: Keyset

    def cursor(self, item: T) -> str:
        return self.keyset.cursor(item)


def page_of(rows: Sequence[T], first: int, keyset: Keyset) -> Page[T]:
    """A page from up to first + 1 rows read: the extra row only says that more follow."""
    return Page(list(rows[:first]), len(rows) > first, keyset)


Where = Callable[[uuid.UUID], Sequence[ColumnElement[bool]]]


def per_account_statement(
    model: type[T],
    account_column: InstrumentedAttribute[Any],
    account_ids: Sequence[uuid.UUID],
    *,
    keyset: Keyset,
    page: PageRequest,
    where: Where = lambda _: (),
) -> Select[T]:
    """One statement for a page of each account's rows.

    Each account gets its own `ORDER BY ... LIMIT` branch of a UNION ALL, so each reads only its
    page through its index, however many rows the account holds. One account (the common case:
    `me`) needs no union: its branch is the statement.
    """

    def branch(account_id: uuid.UUID) -> Select[T]:
        query = select(model).where(account_column == account_id, *where(account_id))
        if page.after is not None:
            query = query.where(keyset.beyond(page.after))
        return query.order_by(*keyset.order()).limit(page.first + 1)

    if len(account_ids) == 1:
        return branch(account_ids[0])
    branches = [select(branch(account_id).subquery()) for account_id in account_ids]
    found = aliased(model, union_all(*branches).subquery(), adapt_on_names=True)
    return select(found).order_by(*keyset.order(found))


async def pages_per_account(
    session: AsyncSession,
    model: type[T],
    account_column: InstrumentedAttribute[Any],
    account_ids: Sequence[uuid.UUID],
    *,
    keyset: Keyset,
    page: PageRequest,
    where: Where = lambda _: (),
) -> dict[uuid.UUID, Page[T]]:
    """A page for each account, in one statement whatever their number."""
    if not account_ids:
        return {}
    statement = per_account_statement(
        model, account_column, account_ids, keyset=keyset, page=page, where=where
    )
    rows: dict[uuid.UUID, list[T]] = {account_id: [] for account_id in account_ids}
    for row in await session.scalars(statement):
        rows[getattr(row, account_column.key)].append(row)
    return {account_id: page_of(rows[account_id], page.first, keyset) for account_id in rows}
