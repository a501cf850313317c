"""Correcting personal data and changing the email address."""

from __future__ import annotations

import strawberry

from auth.permissions import IsAuthenticated
from resolvers import profile
from schema.account import AccountPayload
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.mutations import mutate, mutate_prepared

Info = strawberry.Info[RequestContext]


@strawberry.input(description="Fields left out stay as they are; an empty phone removes it.")
class UpdateProfileInput:
    display_name: str | None = None
    phone: str | None = strawberry.field(
        default=None, description="E.164, such as +4915123456789; an empty string removes it."
    )
    country: str | None = strawberry.field(
        default=None, description="ISO 3166-1 alpha-2, such as DE."
    )
    us_state: str | None = strawberry.field(
        default=None,
        description="Only for the US: the state, ISO 3166-2 (US-CA, or CA); an empty string "
        "removes it. A move out of the US removes it too.",
    )
    locale: str | None = strawberry.field(default=None, description="Such as en, de or pt-BR.")


@strawberry.input(description="The new address, and the current password to prove it is you.")
class EmailChangeInput:
    new_email: str
    current_password: str


@strawberry.input(description="The code sent to the new address.")
class ConfirmEmailInput:
    token: str = strawberry.field(description="The code from the message sent to the new address.")


@strawberry.type(description="Whether the new address is now the account's, or why not.")
class EmailChangePayload:
    email: str | None = strawberry.field(description="The address now in use.")
    errors: list[UserErrorType]


@strawberry.type
class ProfileMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="Correct your personal data."
    )
    async def update_profile(self, info: Info, input: UpdateProfileInput) -> AccountPayload:
        return await mutate(
            info,
            lambda work: profile.update_profile(
                work.session,
                work.actor,
                work.provenance,
                display_name=input.display_name,
                phone=input.phone,
                country=input.country,
                us_state=input.us_state,
                locale=input.locale,
            ),
            AccountPayload.of,
        )

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Send a confirmation code to a new address; the old one stays until then. "
        "The same answer whether or not the new address has an account.",
    )
    async def request_email_change(self, info: Info, input: EmailChangeInput) -> AccountPayload:
        services = info.context.services
        return await mutate_prepared(
            info,
            lambda preparation: profile.request_email_change(
                preparation.reads,
                services.limiter,
                preparation.actor,
                new_email=input.new_email,
                current_password=input.current_password,
                confirmation_link=services.links.confirm_email,
            ),
            AccountPayload.of,
        )

    @strawberry.mutation(description="Redeem the code sent to the new address. No sign-in needed.")
    async def confirm_email_change(
        self, info: Info, input: ConfirmEmailInput
    ) -> EmailChangePayload:
        return await mutate(
            info,
            lambda work: profile.confirm_email_change(work.session, token=input.token),
            lambda account, errors: EmailChangePayload(
                email=account.email if account else None, errors=errors
            ),
        )
