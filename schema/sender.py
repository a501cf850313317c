"""The sender API: consent lookups and the opt-out feed, for machine clients with an API key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import strawberry

from auth.permissions import CanReadConsent, CanReadSuppressions
from models import ConsentEvent, Source
from resolvers import catalogue, sender
from resolvers.catalogue import Channel, Topic
from resolvers.sender import Block
from schema.connections import Before, Connection, Last, connection
from schema.context import RequestContext
from schema.ids import parse_id

Info = strawberry.Info[RequestContext]
strawberry.enum(
    Block,
    name="ConsentBlock",
    description="Why something may not be done for an account now, the first that applies: "
    "UNKNOWN_ACCOUNT (no such account, or erased), DELETION_PENDING (consent-based processing "
    "stops until the deletion is cancelled), RESTRICTED (reported as a child's account: treated "
    "as a minor's until reviewed), MINOR (below the age of digital consent where they live, and "
    "no parent's consent to it stands), "
    "GPC (opted out of sale and sharing by the Global Privacy Control signal), NOT_CHOSEN "
    "(off: never switched on, or switched off).",
)


@strawberry.type(name="ConsentDecision", description="Whether one thing may be done now.")
class ConsentDecisionType:
    key: str = strawberry.field(description="The catalogue key asked about.")
    allowed: bool = strawberry.field(description="Whether it may be done for the account now.")
    blocked_by: Block | None = strawberry.field(description="Why not, when not allowed.")


@strawberry.type(
    name="AccountConsentStatus", description="What may be done for one account asked about."
)
class AccountConsentStatusType:
    account_id: strawberry.ID = strawberry.field(description="As asked.")
    known: bool = strawberry.field(
        description="False for an id that names no account (or an erased one): every decision "
        "is then not allowed, blocked by UNKNOWN_ACCOUNT."
    )
    decisions: list[ConsentDecisionType] = strawberry.field(
        description="One per key asked, in the order asked."
    )

    @classmethod
    def of(cls, asked: strawberry.ID, status: sender.AccountConsent) -> AccountConsentStatusType:
        return cls(
            account_id=asked,
            known=status.known,
            decisions=[
                ConsentDecisionType(key=d.key, allowed=d.allowed, blocked_by=d.blocked_by)
                for d in status.decisions
            ],
        )


@strawberry.type(name="Suppression", description="A marketing message switched from on to off.")
class SuppressionType:
    account_id: strawberry.ID
    key: str = strawberry.field(
        description="The catalogue key, such as communication.email.marketing."
    )
    channel: Channel
    topic: Topic
    source: Source = strawberry.field(
        description="Through what it was switched off (LINK for an unsubscribe link, AGE_RULES "
        "for the protection of a minor, ...)."
    )
    occurred_at: datetime

    @classmethod
    def from_model(cls, event: ConsentEvent) -> SuppressionType:
        setting = catalogue.BY_KEY[event.key]
        assert setting.channel is not None and setting.topic is not None, "a marketing message"
        return cls(
            account_id=strawberry.ID(str(event.account_id)),
            key=event.key,
            channel=setting.channel,
            topic=setting.topic,
            source=event.source,
            occurred_at=event.occurred_at,
        )


@strawberry.type
class SenderQuery:
    @strawberry.field(
        permission_classes=[CanReadConsent],
        description="For up to 1,000 accounts and 10 catalogue keys (message topics by channel, "
        "data-sharing purposes, cookie categories), whether each may be done for each account "
        "right now. API keys with the consent:read scope only.",
    )
    async def consent_status(
        self,
        info: Info,
        account_ids: Annotated[
            list[strawberry.ID],
            strawberry.argument(description="1 to 1,000; one answer each, in this order."),
        ],
        keys: Annotated[
            list[str],
            strawberry.argument(description="1 to 10 catalogue keys; an unknown one is refused."),
        ],
    ) -> list[AccountConsentStatusType]:
        ids = [parse_id(raw) for raw in account_ids]
        answers = await info.context.answer(
            lambda session: sender.consent_status(session, account_ids=ids, keys=keys)
        )
        return [
            AccountConsentStatusType.of(raw, answer)
            for raw, answer in zip(account_ids, answers, strict=True)
        ]

    @strawberry.field(
        permission_classes=[CanReadSuppressions],
        description="Marketing opt-outs, oldest first, for a mailer to sync incrementally: pass "
        "the last endCursor as `after` next time. An opt-out is listed once it is a minute old. "
        "API keys with the suppressions:read scope only.",
    )
    async def suppressed_accounts(
        self,
        info: Info,
        since: Annotated[
            datetime | None,
            strawberry.argument(description="Only opt-outs made at or after this time."),
        ] = None,
        first: int = 100,
        after: str | None = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[SuppressionType]:
        settle = timedelta(seconds=info.context.services.config.suppression_feed_delay_seconds)
        page = await info.context.answer(
            lambda session: sender.suppressed_accounts(
                session,
                since=since,
                first=first,
                after=after,
                last=last,
                before=before,
                settle=settle,
            )
        )
        return connection(page, SuppressionType.from_model)
