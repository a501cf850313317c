"""Deleting one's account: asking for it, changing one's mind, and seeing when it is due."""

from __future__ import annotations

import strawberry

from auth.permissions import IsAuthenticated
from models import Account as AccountModel
from resolvers import erasure
from schema.account import AccountPayload
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.mutations import mutate, mutate_prepared

Info = strawberry.Info[RequestContext]


@strawberry.input(description="Confirm a deletion request with your password.")
class RequestAccountDeletionInput:
    password: str = strawberry.field(description="Your current password, to confirm it is you.")


@strawberry.type
class ErasureMutation:
    @strawberry.mutation(
        description=(
            "Delete your account after a grace period (`Account.deletion.dueAt`). You are signed "
            "out on every device; sign in again before the date to cancel."
        ),
        permission_classes=[IsAuthenticated],
    )
    async def request_account_deletion(
        self, info: Info, input: RequestAccountDeletionInput
    ) -> AccountPayload:
        context = info.context

        def answer(account: AccountModel | None, errors: list[UserErrorType]) -> AccountPayload:
            if account is not None:
                context.caller.end_web_session()
            return AccountPayload.of(account, errors)

        return await mutate_prepared(
            info,
            lambda preparation: erasure.request_account_deletion(
                preparation.reads,
                context.services.limiter,
                preparation.actor,
                password=input.password,
                grace_days=context.services.config.deletion_grace_days,
            ),
            answer,
        )

    @strawberry.mutation(
        description="Keep your account: cancels a deletion you asked for, before its date.",
        permission_classes=[IsAuthenticated],
    )
    async def cancel_account_deletion(self, info: Info) -> AccountPayload:
        return await mutate(
            info,
            lambda work: erasure.cancel_account_deletion(work.session, work.actor),
            AccountPayload.of,
        )
