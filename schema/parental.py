"""Parental consent: a minor asks a parent to consent to settings withheld from minors."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.permissions import IsAuthenticated
from resolvers import parental
from resolvers.parental import ParentalConsentView, ParentalStatus
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.mutations import mutate_prepared

Info = strawberry.Info[RequestContext]
strawberry.enum(
    ParentalStatus,
    name="ParentalConsentStatus",
    description="Where a parent's consent to one setting stands. LAPSED: granted, but the "
    "person has since reached the age of digital consent; the setting keeps its value, now as "
    "their own choice.",
)


@strawberry.type(
    name="ParentalConsent",
    description="One setting a minor asked a parent to consent to. The parent's address is "
    "never shown: only a keyed hash of it is kept.",
)
class ParentalConsentType:
    key: str = strawberry.field(description="The setting's catalogue key.")
    status: ParentalStatus
    requested_at: datetime = strawberry.field(description="When the minor asked.")
    decide_by: datetime = strawberry.field(description="The parent can answer until then.")
    decided_at: datetime | None = strawberry.field(description="When the parent answered.")
    withdrawn_at: datetime | None = strawberry.field(
        description="When the parent withdrew a consent given."
    )

    @classmethod
    def from_view(cls, view: ParentalConsentView) -> ParentalConsentType:
        return cls(
            key=view.key,
            status=view.status,
            requested_at=view.requested_at,
            decide_by=view.decide_by,
            decided_at=view.decided_at,
            withdrawn_at=view.withdrawn_at,
        )


@strawberry.input(description="Whom to ask, and for which settings.")
class ParentalConsentInput:
    parent_email: str = strawberry.field(description="Where the request is mailed.")
    keys: list[str] = strawberry.field(
        description="Catalogue keys of settings whose `parentMayGrant` is true."
    )


@strawberry.type(description="The request as sent, or why it was not.")
class ParentalConsentPayload:
    consents: list[ParentalConsentType] | None = strawberry.field(
        description="The settings asked, each PENDING until the parent answers; null when "
        "the request was not sent (see errors)."
    )
    errors: list[UserErrorType]


@strawberry.type
class ParentalMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Below the age of digital consent: mail a parent or guardian a link to "
        "consent to settings you cannot switch on alone. Rate limited per account and per "
        "parent address.",
    )
    async def request_parental_consent(
        self, info: Info, input: ParentalConsentInput
    ) -> ParentalConsentPayload:
        services = info.context.services
        return await mutate_prepared(
            info,
            lambda preparation: parental.request_parental_consent(
                preparation.reads,
                services.limiter,
                preparation.actor,
                parent_email=input.parent_email,
                keys=input.keys,
                secret_key=services.config.secret_key,
                page_link=services.links.parental_consent,
            ),
            lambda views, errors: ParentalConsentPayload(
                consents=[ParentalConsentType.from_view(view) for view in views]
                if views is not None
                else None,
                errors=errors,
            ),
        )
