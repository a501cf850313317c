"""Connections (Relay-style pages with cursors) and the batching of an account's lists.

An Account in a list (a staff search, a privacy request's account) asks for its own sessions,
requests and history; the loaders here answer all the accounts of one level with one statement.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Annotated, Any, Generic, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from resolvers.paging import MAX_PAGE, Keyset, Page, PageRequest, Tally, page_request
from schema.context import RequestContext, refusal_as_graphql_error

# The arguments of backward paging, the same on every connection.
Last = Annotated[
    int | None,
    strawberry.argument(
        description="Page backward: this many items (1 to 100) before `before`, or the last ones."
    ),
]
Before = Annotated[
    str | None,
    strawberry.argument(description="A `startCursor` (or any cursor): the items before it."),
]

Node = TypeVar("Node")
Row = TypeVar("Row")
Args = TypeVar("Args", bound=Hashable)
Fetch = Callable[
    [AsyncSession, Sequence[uuid.UUID], Args], Awaitable[Mapping[uuid.UUID, Page[Row]]]
]


@strawberry.type(
    description="Where a page starts and ends, and whether pages come before and after."
)
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="Paging forward (first, after): whether another page follows. Paging "
        "backward: false."
    )
    end_cursor: str | None = strawberry.field(
        description="The last item's cursor: pass it as `after` for the next page."
    )
    has_previous_page: bool = strawberry.field(
        default=False,
        description="Paging backward (last, before): whether another page comes before. "
        "Paging forward: false.",
    )
    start_cursor: str | None = strawberry.field(
        default=None,
        description="The first item's cursor: pass it as `before` for the page before.",
    )


@strawberry.type(description="One item of a page and the cursor that pages on from it.")
class Edge(Generic[Node]):
    cursor: str
    node: Node


@strawberry.type(
    description="A page of items; `pageInfo.endCursor` asks for the next one, "
    "`pageInfo.startCursor` (with `last`) for the one before."
)
class Connection(Generic[Node]):
    edges: list[Edge[Node]]
    page_info: PageInfo
    tally: strawberry.Private[Tally | None] = None

    @strawberry.field(
        description="How many items the whole list holds, every page together (counted only "
        "when asked: one more statement)."
    )
    async def total_count(self, info: strawberry.Info[RequestContext]) -> int:
        return await total_of(info.context, self.tally)


def page_info(page: Page[Any], cursors: list[str]) -> PageInfo:
    """Where a page starts and ends, from the cursors of its items."""
    return PageInfo(
        has_next_page=page.has_next_page,
        end_cursor=cursors[-1] if cursors else None,
        has_previous_page=page.has_previous_page,
        start_cursor=cursors[0] if cursors else None,
    )


def connection(page: Page[Row], node: Callable[[Row], Node]) -> Connection[Node]:
    edges = [Edge(cursor=page.cursor(item), node=node(item)) for item in page.items]
    return Connection(
        edges=edges, page_info=page_info(page, [edge.cursor for edge in edges]), tally=page.tally
    )


async def total_of(context: RequestContext, tally: Tally | None) -> int:
    """The size of the whole list a page was cut from; sibling lists (the same list of each
    account of a page) are counted together, in one statement."""
    if tally is None:
        raise LookupError("this list has no count")
    loader: DataLoader[Any, int] | None = context.loaders.get(tally.count)
    if loader is None:
        count = tally.count

        async def load(keys: list[Any]) -> list[int]:
            async with context.reading() as session:
                counted = await count(session, list(dict.fromkeys(keys)))
            return [counted[key] for key in keys]

        # Not cached: a mutation earlier in the request may have changed what a list holds.
        loader = DataLoader(load, cache=False)
        context.loaders[tally.count] = loader
    return await loader.load(tally.key)


def checked(make: Callable[[], Row]) -> Row:
    """Check a field's arguments before anything runs: a refusal becomes a GraphQL error with
    code BAD_USER_INPUT, as `RequestContext.answer` makes it."""
    with refusal_as_graphql_error():
        return make()


async def load_page(
    context: RequestContext, fetch: Fetch[Args, Row], account_id: uuid.UUID, args: Args
) -> Page[Row]:
    """One account's page, read together with every sibling account's that asks the same."""
    loader: DataLoader[tuple[uuid.UUID, Any], Page[Any]] | None = context.loaders.get(fetch)
    if loader is None:

        async def load(keys: list[tuple[uuid.UUID, Any]]) -> list[Page[Any]]:
            by_args: dict[Any, dict[uuid.UUID, None]] = defaultdict(dict)
            for key_account, key_args in keys:
                by_args[key_args][key_account] = None
            found: dict[tuple[uuid.UUID, Any], Page[Any]] = {}
            for same_args, accounts in by_args.items():
                account_ids = list(accounts)
                # A statement reads at most as many accounts' pages as one page of a list holds.
                for start in range(0, len(account_ids), MAX_PAGE):
                    chunk = account_ids[start : start + MAX_PAGE]
                    async with context.reading() as session:
                        pages = await fetch(session, chunk, same_args)
                    found.update({(a, same_args): pages[a] for a in chunk})
            return [found[key] for key in keys]

        # Not cached: a mutation earlier in the request may have changed what a page holds.
        loader = DataLoader(load, cache=False)
        context.loaders[fetch] = loader
    return await loader.load((account_id, args))


async def first_rows(
    context: RequestContext,
    fetch: Fetch[PageRequest, Row],
    account_id: uuid.UUID,
    first: int,
    keyset: Keyset,
) -> list[Row]:
    """The first `first` rows of one of an account's lists (checked, capped), read together
    with its siblings': what every plain list field of an account answers with."""
    page = checked(lambda: page_request(first, None, keyset))
    return (await load_page(context, fetch, account_id, page)).items
