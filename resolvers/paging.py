"""Pages of the lists that can grow: a capped `first` (or `last`), and cursors that stay valid as
rows arrive.

A cursor names a position in a fixed order (keyset pagination, never OFFSET): the values of the
order's columns at the last row seen, the last column unique. The next page is the rows beyond it,
so rows added or removed elsewhere neither repeat nor skip a row; the page before one (`last`,
`before`) is read the same way in the opposite order, and shown in the list's own.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    TypeDecorator,
    and_,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from resolvers.errors import ErrorCode, Rejected

MAX_PAGE = 100
T = TypeVar("T")
Query = TypeVar("Query", bound=Select[*tuple[Any, ...]])
# The largest value an INTEGER or a BIGINT column holds: a cursor past it can point at no row.
_LARGEST = {False: 2**31 - 1, True: 2**63 - 1}


def checked_first(first: int, field: str = "first") -> int:
    """`first` (or `last`) as asked, or a refusal when it is outside 1 to MAX_PAGE."""
    if not 1 <= first <= MAX_PAGE:
        raise Rejected.one(ErrorCode.INVALID_INPUT, f"Ask for 1 to {MAX_PAGE} at a time.", field)
    return first


def _encode(kind: str, *parts: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{'|'.join(parts)}".encode()).decode()


def _not_ours(field: str) -> Rejected:
    return Rejected.one(ErrorCode.INVALID_INPUT, "The cursor is not one this API gave out.", field)


def _decode(kind: str, cursor: str, parts: int, field: str) -> list[str]:
    """The parts of a cursor of this kind, or a refusal for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeError, binascii.Error):
        raise _not_ours(field) from None
    prefix, _, rest = text.partition(":")
    values = rest.split("|")
    if prefix != kind or len(values) != parts:
        raise _not_ours(field)
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

    def position(self, cursor: str, field: str = "after") -> tuple[Any, ...]:
        """The column values a cursor names; a refusal for one this keyset did not give out."""
        parts = _decode(self.kind, cursor, len(self.columns), field)
        try:
            return tuple(_value(c, part) for c, part in zip(self.columns, parts, strict=True))
        except (ValueError, OverflowError):
            raise _not_ours(field) from None

    def toward(self, page: PageRequest) -> Keyset:
        """The order a page is read in: this one, or the opposite for a page before a cursor."""
        if not page.backward:
            return self
        return Keyset(self.kind, self.columns, not self.descending)

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
    """What a client asked for: how many, and after which position (checked and decoded); when
    `backward`, the `first` rows before that position (`last` and `before`)."""

    first: int
    after: tuple[Any, ...] | None = None
    backward: bool = False


def page_request(
    first: int,
    after: str | None,
    keyset: Keyset,
    *,
    last: int | None = None,
    before: str | None = None,
) -> PageRequest:
    """Check `first` and decode `after` (or `last` and `before`), before anything is read."""
    if last is None and before is None:
        return PageRequest(
            checked_first(first), keyset.position(after) if after is not None else None
        )
    if after is not None:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT, "Page forward (after) or backward (before), not both.", "after"
        )
    if last is None:
        raise Rejected.one(ErrorCode.INVALID_INPUT, "Say how many with `last`.", "last")
    position = keyset.position(before, "before") if before is not None else None
    return PageRequest(checked_first(last, "last"), position, backward=True)


def cut(query: Query, keyset: Keyset, page: PageRequest) -> Query:
    """The rows of one page of `query`: past the cursor in the direction asked, in that order,
    one more than asked (which only says that more follow)."""
    order = keyset.toward(page)
    if page.after is not None:
        query = query.where(order.beyond(page.after))
    return query.order_by(*order.order()).limit(page.first + 1)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_next_page: bool
    keyset: Keyset
    has_previous_page: bool = False
    # Counts the whole list the page was cut from, when a client asks for totalCount.
    tally: Tally | None = None

    def cursor(self, item: T) -> str:
        return self.keyset.cursor(item)


def page_of(
    rows: Sequence[T], page: PageRequest, keyset: Keyset, tally: Tally | None = None
) -> Page[T]:
    """A page from the rows `cut` read, in the list's own order. Paging forward, the extra row
    says a next page follows; backward, that a previous one does (whether the other side has
    rows is not read: false, as the Relay specification allows)."""
    items, more = list(rows[: page.first]), len(rows) > page.first
    if page.backward:
        return Page(items[::-1], False, keyset, has_previous_page=more, tally=tally)
    return Page(items, more, keyset, tally=tally)


@dataclass(frozen=True, eq=False)
class Tally:
    """How to count the lists pages were cut from: `count` answers, in one statement, for every
    key asked together (an account's id, or None for a list of its own)."""

    count: Callable[[AsyncSession, Sequence[Any]], Awaitable[dict[Any, int]]]
    key: Any = None


def tally_of(query: Select[*tuple[Any, ...]]) -> Tally:
    """The tally of one list: the rows of `query` (its filters, no cursor), counted."""

    async def count(session: AsyncSession, keys: Sequence[Any]) -> dict[Any, int]:
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
        return dict.fromkeys(keys, int(total or 0))

    return Tally(count)


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
        return cut(query, keyset, page)

    if len(account_ids) == 1:
        return branch(account_ids[0])
    branches = [select(branch(account_id).subquery()) for account_id in account_ids]
    found = aliased(model, union_all(*branches).subquery(), adapt_on_names=True)
    return select(found).order_by(*keyset.toward(page).order(found))


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

    async def count(session: AsyncSession, keys: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Each account's whole list counted, one branch each, in one statement."""
        branches = [
            select(literal(str(key)).label("key"), func.count().label("total"))
            .select_from(model)
            .where(account_column == key, *where(key))
            for key in keys
        ]
        counted = await session.execute(branches[0] if len(branches) == 1 else union_all(*branches))
        return {uuid.UUID(key): int(total) for key, total in counted}

    return {
        account_id: page_of(rows[account_id], page, keyset, Tally(count, account_id))
        for account_id in rows
    }
