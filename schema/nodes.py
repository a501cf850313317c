"""`node(id:)`: any object a client holds the id of, fetched again (Relay's refetching), with the
permissions of the field that lists it."""

from __future__ import annotations

from typing import Annotated

import strawberry

from auth.actor import Actor
from auth.permissions import IsAuthenticated
from models import Account, AuthSession, PrivacyRequest
from resolvers import nodes
from schema.account import AccountType, PrivacyRequestType, SessionType
from schema.context import RequestContext
from schema.ids import Node, parse_id

Info = strawberry.Info[RequestContext]


def _as_node(found: nodes.Found, actor: Actor) -> Node:
    if isinstance(found, Account):
        return AccountType.from_model(found)
    if isinstance(found, AuthSession):
        return SessionType.from_model(found, actor.session_id)
    assert isinstance(found, PrivacyRequest)
    return PrivacyRequestType.from_model(found)


@strawberry.type
class NodeQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="The Account, Session or PrivacyRequest with this id, if the caller may see "
        "it where it is listed: their own account, sessions and requests; with a `reason`, "
        "any account for staff and any privacy request for a privacy officer (audited, as "
        "staffAccount and privacyRequests are). Null for anything else.",
    )
    async def node(
        self,
        info: Info,
        id: strawberry.ID,
        reason: Annotated[
            str | None,
            strawberry.argument(
                description="Staff reading someone else's object: why (audited, 5 to 500 "
                "characters)."
            ),
        ] = None,
    ) -> Node | None:
        context = info.context
        actor = await context.signed_in()
        node_id = parse_id(id)
        found = await context.answer(lambda session: nodes.own_node(session, actor, node_id))
        if found is None and reason is not None:
            found = await context.answer_audited(
                lambda session: nodes.staff_node(
                    session, actor, node_id, reason=reason, request_id=context.request_id
                )
            )
        return _as_node(found, actor) if found is not None else None
