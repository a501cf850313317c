"""Deleting one's account: asking for it, changing one's mind, and seeing when it is due."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from auth.permissions import IsAuthenticated
from models import Account as AccountModel
from resolvers import erasure
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.mutations import mutate, mutate_prepared

if TYPE_CHECKING:
    from schema.account import AccountPayload

Info = strawberry.Info[RequestContext]


@strawberry.type(description="The account is scheduled for deletion.")
class AccountDeletion:
    requested_at: datetime = strawberry.field(description="When the deletion was asked for.")
    due_at: datetime = strawberry.field(
        description="When the account is erased. Until then, `cancelAccountDeletion` keeps it."
    )

    @classmethod
    def of(cls, account: AccountModel) -> AccountDeletion | None:
        if account.deletion_requested_at is None or account.deletion_due_at is None:
            return None
        return cls(requested_at=account.deletion_requested_at, due_at=account.deletion_due_at)


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
    ) -> Annotated[AccountPayload, strawberry.lazy("schema.account")]:
        from schema.account import AccountPayload

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
    async def cancel_account_deletion(
        self, info: Info
    ) -> Annotated[AccountPayload, strawberry.lazy("schema.account")]:
        from schema.account import AccountPayload

        return await mutate(
            info,
            lambda work: erasure.cancel_account_deletion(work.session, work.actor),
            AccountPayload.of,
        )
