"""Changing one's privacy settings. Each change answers with the Account, which is made of
schema.settings' types: so the changes live here, above both."""

from __future__ import annotations

import strawberry
from strawberry.permission import BasePermission

from auth.permissions import IsAuthenticated
from resolvers import settings as use_cases
from resolvers.catalogue import Audience, Channel, Purpose, Topic
from schema.account import AccountType
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.mutations import mutate

Info = strawberry.Info[RequestContext]


@strawberry.type(
    description="The account with its settings after the change, or why it was refused.",
)
class SettingsPayload:
    account: AccountType | None
    errors: list[UserErrorType]


def idempotency_key() -> str | None:
    """The `idempotencyKey` field every settings change takes."""
    key: str | None = strawberry.field(
        default=None, description="Send the same key when retrying; the change is made once."
    )
    return key


@strawberry.input(description="Turn one topic on one channel on or off.")
class CommunicationPreferenceInput:
    channel: Channel
    topic: Topic
    enabled: bool
    idempotency_key: str | None = idempotency_key()


@strawberry.input(
    description="One channel and topic and whether it should be on, in a change of several.",
)
class CommunicationChange:
    channel: Channel
    topic: Topic
    enabled: bool


@strawberry.input(description="Several communication preferences changed together.")
class CommunicationPreferencesInput:
    changes: list[CommunicationChange] = strawberry.field(
        description="Every change to make; all are made or none."
    )
    idempotency_key: str | None = idempotency_key()


@strawberry.input(description="Allow or stop one use of the person's data.")
class DataSharingInput:
    purpose: Purpose
    enabled: bool
    idempotency_key: str | None = idempotency_key()


@strawberry.input(description="Fields left out stay as they are.")
class VisibilityInput:
    profile: Audience | None = strawberry.field(
        default=None, description="Who may see the profile at all."
    )
    email: Audience | None = None
    phone: Audience | None = strawberry.field(
        default=None, description="Who may see the phone number."
    )
    search_engine_indexing: bool | None = strawberry.field(
        default=None, description="Whether search engines may index the public profile."
    )
    idempotency_key: str | None = idempotency_key()


@strawberry.input(description="Strictly necessary cookies are always on. Left out: unchanged.")
class CookieConsentInput:
    functional: bool | None = strawberry.field(
        default=None, description="Remembering choices such as language."
    )
    analytics: bool | None = strawberry.field(
        default=None, description="Measuring how the site is used."
    )
    advertising: bool | None = strawberry.field(
        default=None, description="Ads and the tracking behind them."
    )
    idempotency_key: str | None = idempotency_key()


@strawberry.input(description="Turn every marketing message off.")
class OptOutInput:
    idempotency_key: str | None = idempotency_key()


async def _change(
    info: Info, apply: use_cases.SettingsChange, **arguments: object
) -> SettingsPayload:
    """Run one settings use case for the signed-in person and answer with their account."""
    context = info.context

    async def answer(changed: int | None, errors: list[UserErrorType]) -> SettingsPayload:
        if errors:
            return SettingsPayload(account=None, errors=errors)
        actor = await context.signed_in()
        account = await context.account_of(actor.account_id)
        return SettingsPayload(account=AccountType.from_model(account), errors=[])

    return await mutate(
        info,
        lambda work: apply(work.session, work.actor.account_id, work.provenance, **arguments),
        answer,
    )


PERSON: list[type[BasePermission]] = [IsAuthenticated]


@strawberry.type
class SettingsMutation:
    @strawberry.mutation(
        description="Turn one topic on one channel on or off; consent is recorded.",
        permission_classes=PERSON,
    )
    async def set_communication_preference(
        self, info: Info, input: CommunicationPreferenceInput
    ) -> SettingsPayload:
        return await _change(
            info,
            use_cases.set_communication_preference,
            channel=input.channel,
            topic=input.topic,
            enabled=input.enabled,
            idempotency_key=input.idempotency_key,
        )

    @strawberry.mutation(permission_classes=PERSON, description="All or nothing.")
    async def update_communication_preferences(
        self, info: Info, input: CommunicationPreferencesInput
    ) -> SettingsPayload:
        return await _change(
            info,
            use_cases.update_communication_preferences,
            changes=[(c.channel, c.topic, c.enabled) for c in input.changes],
            idempotency_key=input.idempotency_key,
        )

    @strawberry.mutation(
        description="Allow or stop one use of your data; consent is recorded.",
        permission_classes=PERSON,
    )
    async def set_data_sharing(self, info: Info, input: DataSharingInput) -> SettingsPayload:
        return await _change(
            info,
            use_cases.set_data_sharing,
            purpose=input.purpose,
            enabled=input.enabled,
            idempotency_key=input.idempotency_key,
        )

    @strawberry.mutation(
        description="Choose who sees your profile and contact fields, and search indexing.",
        permission_classes=PERSON,
    )
    async def update_visibility(self, info: Info, input: VisibilityInput) -> SettingsPayload:
        return await _change(
            info,
            use_cases.update_visibility,
            profile=input.profile,
            email=input.email,
            phone=input.phone,
            search_engine_indexing=input.search_engine_indexing,
            idempotency_key=input.idempotency_key,
        )

    @strawberry.mutation(
        permission_classes=PERSON,
        description="Every consent-based message on every channel off, one event each.",
    )
    async def opt_out_of_marketing(
        self, info: Info, input: OptOutInput | None = None
    ) -> SettingsPayload:
        return await _change(
            info,
            use_cases.opt_out_of_marketing,
            idempotency_key=input.idempotency_key if input else None,
        )
