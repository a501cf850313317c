"""One way to write a mutation field: its use case runs in a unit of work of its own, and a
refusal comes back as the payload's errors.

A mutation's body is one call to `mutate`: the use case (given the unit of work's session, the
caller and the provenance of the change) and how to answer with what it returned. Who may call
the field stays declared on the field (`permission_classes`), where a reviewer looks for it and
where strawberry refuses a caller before anything runs. Every field of the Mutation type carries
`GoesThroughMutate`, added as the schema is built, so a field that answers without running its
use case here is an error in every test that calls it, not a change that silently never lands.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension
from strawberry.types.field import StrawberryField

from auth.actor import Actor
from auth.rate_limits import refusal_headers
from resolvers.consent import Provenance
from resolvers.errors import Rejected, UserError
from resolvers.prepared import Prepared, Reads
from schema.errors import UserErrorType, to_user_errors

if TYPE_CHECKING:
    from schema.context import RequestContext

T = TypeVar("T")
P = TypeVar("P")


@dataclass(frozen=True)
class Work:
    """What a mutation's use case runs with: the unit of work's session, who calls, and where
    the change comes from."""

    session: AsyncSession
    caller: Actor | None
    provenance: Provenance

    @property
    def actor(self) -> Actor:
        """The signed-in caller, in fields whose permission class requires one."""
        assert self.caller is not None, "guard this field with a permission class"
        return self.caller

    @property
    def request_id(self) -> str:
        return self.provenance.request_id or ""


@dataclass(frozen=True)
class Preparation:
    """What a use case that prepares before it writes (resolvers/prepared.py) runs with: short
    read sessions, who calls, and where the change comes from. No transaction is open yet."""

    reads: Reads
    caller: Actor | None
    provenance: Provenance

    @property
    def actor(self) -> Actor:
        """The signed-in caller, in fields whose permission class requires one."""
        assert self.caller is not None, "guard this field with a permission class"
        return self.caller


async def run_prepared(
    context: RequestContext, prepare: Callable[[Reads], Awaitable[Prepared[T]]]
) -> tuple[T | None, list[UserErrorType]]:
    """Run one use case: its preparation (checks, rate limits, reads, password hashing) with no
    transaction open, then its write in a unit of work of its own, then what follows the
    commit. A refusal comes back as payload errors (and, for a rate limit, the response's retry
    headers), with everything it started rolled back; success comes back with no errors. A
    refusal in one field never undoes another's change."""
    context.mutations_run += 1
    try:
        prepared = await prepare(context.reading)
        async with context.unit_of_work() as session:
            written = await prepared.write(session)
    except Rejected as rejected:
        _tell_when_to_retry(context, rejected.errors)
        return None, to_user_errors(rejected.errors)
    await prepared.then()
    return written, []


async def run_use_case(
    context: RequestContext, use_case: Callable[[AsyncSession], Awaitable[T]]
) -> tuple[T | None, list[UserErrorType]]:
    """`run_prepared` for a use case with nothing to prepare: all of it is its write."""

    async def nothing_to_prepare(_: Reads) -> Prepared[T]:
        return Prepared(use_case)

    return await run_prepared(context, nothing_to_prepare)


def _tell_when_to_retry(context: RequestContext, errors: list[UserError]) -> None:
    """A rate-limited answer says in its headers how long to wait, for every field of the
    request that a limit refused."""
    refused = [error.refusal for error in errors if error.refusal]
    if refused:
        context.refusals += refused
        context.response.headers.update(refusal_headers(context.refusals))


async def mutate(
    info: strawberry.Info[RequestContext],
    use_case: Callable[[Work], Awaitable[T]],
    answer: Callable[[T | None, list[UserErrorType]], P | Awaitable[P]],
    *,
    changed: Callable[[T], Iterable[uuid.UUID]] = lambda _: (),
) -> P:
    """The whole of a mutation field: run `use_case` in a unit of work, then `answer` with what
    it returned (None and the errors when it was refused).

    After a change, the caller's settings are read again when a payload asks for them, and so
    are the rows and settings of the accounts `changed` names (such as one a staff member
    corrected); a row the use case returns is the payload's own and needs no reading again.
    """
    context = info.context
    caller = await context.actor()
    provenance = context.provenance()
    result, errors = await run_use_case(
        context, lambda session: use_case(Work(session, caller, provenance))
    )
    return await _answered(context, caller, result, errors, answer, changed)


async def mutate_prepared(
    info: strawberry.Info[RequestContext],
    prepare: Callable[[Preparation], Awaitable[Prepared[T]]],
    answer: Callable[[T | None, list[UserErrorType]], P | Awaitable[P]],
    *,
    changed: Callable[[T], Iterable[uuid.UUID]] = lambda _: (),
) -> P:
    """As `mutate`, for a use case that prepares before it writes (resolvers/prepared.py): its
    slow work runs before the unit of work opens, and only its write inside."""
    context = info.context
    caller = await context.actor()
    provenance = context.provenance()
    result, errors = await run_prepared(
        context, lambda reads: prepare(Preparation(reads, caller, provenance))
    )
    return await _answered(context, caller, result, errors, answer, changed)


async def _answered(
    context: RequestContext,
    caller: Actor | None,
    result: T | None,
    errors: list[UserErrorType],
    answer: Callable[[T | None, list[UserErrorType]], P | Awaitable[P]],
    changed: Callable[[T], Iterable[uuid.UUID]],
) -> P:
    """The payload, once the loaders have forgotten what the change made stale."""
    if not errors:
        if caller is not None:
            context.forget_settings(caller.account_id)
        for account_id in changed(cast(T, result)):
            context.forget_account(account_id)
            context.forget_settings(account_id)
    answered = answer(result, errors)
    if inspect.isawaitable(answered):
        return await answered
    return answered


class GoesThroughMutate(FieldExtension):
    """On every Mutation field: the field must have run its use case through `run_use_case`
    (which `mutate` calls); one that answered without it has changed nothing, and says so."""

    async def resolve_async(
        self,
        next_: Callable[..., Awaitable[Any]],
        source: Any,
        info: strawberry.Info[RequestContext],
        **kwargs: Any,
    ) -> Any:
        context = info.context
        before = context.mutations_run
        answered = await next_(source, info, **kwargs)
        if context.mutations_run == before:
            raise RuntimeError(
                f"mutation {info.field_name} answered without running its use case in a unit "
                "of work (schema/mutations.py)"
            )
        return answered


def guard_mutations(fields: list[StrawberryField]) -> list[StrawberryField]:
    """Puts the check on each Mutation field, once, innermost: a caller refused by a permission
    class or for its input never reaches the resolver, so has nothing to answer for."""
    for field in fields:
        if not any(isinstance(e, GoesThroughMutate) for e in field.extensions):
            field.extensions.insert(0, GoesThroughMutate())
    return fields
