"""Privacy policy versions: the one in force, which one a person accepted, and publishing."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.permissions import IsAuthenticated, IsPrivacyOfficer
from models import PolicyVersion as PolicyVersionModel
from resolvers import consent, policy
from schema.account import AccountType
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.mutations import mutate

Info = strawberry.Info[RequestContext]


@strawberry.type(description="A published version of the privacy policy.")
class PolicyVersion:
    version: str
    published_at: datetime
    summary: str
    material: bool = strawberry.field(
        description="Whether it changes what people agreed to, so they must accept it again."
    )

    @classmethod
    def from_model(cls, model: PolicyVersionModel) -> PolicyVersion:
        return cls(
            version=model.version,
            published_at=model.published_at,
            summary=model.summary,
            material=model.material,
        )


@strawberry.input(description="The policy version the person read and accepts.")
class AcceptPolicyInput:
    version: str = strawberry.field(
        description="The `currentPolicy.version` the person has read and accepts."
    )


@strawberry.input(description="A new version of the privacy policy.")
class PublishPolicyVersionInput:
    version: str = strawberry.field(
        description="New; letters, digits, dots, dashes, such as 2026-01."
    )
    summary: str = strawberry.field(description="What changed, in words people understand.")
    material: bool = strawberry.field(
        description="True: everyone must accept it again and is sent a notice by email."
    )


@strawberry.type(description="The account after accepting, or why it was refused.")
class AcceptPolicyPayload:
    account: AccountType | None
    errors: list[UserErrorType]


@strawberry.type(description="The published version, or why it was refused.")
class PublishPolicyVersionPayload:
    policy: PolicyVersion | None
    notified: int = strawberry.field(
        default=0, description="How many notices were queued for sending."
    )
    errors: list[UserErrorType]


@strawberry.type
class PolicyQuery:
    @strawberry.field(description="The privacy policy in force. Needs no sign-in.")
    async def current_policy(self, info: Info) -> PolicyVersion:
        async with info.context.reading() as session:
            return PolicyVersion.from_model(await policy.current_policy(session))


@strawberry.type
class PolicyMutation:
    @strawberry.mutation(
        description="Accept the privacy policy in force.", permission_classes=[IsAuthenticated]
    )
    async def accept_policy(self, info: Info, input: AcceptPolicyInput) -> AcceptPolicyPayload:
        return await mutate(
            info,
            lambda work: consent.accept_policy(
                work.session, work.actor, work.provenance, version=input.version
            ),
            lambda account, errors: AcceptPolicyPayload(
                account=AccountType.from_model(account) if account else None, errors=errors
            ),
        )

    @strawberry.mutation(
        description="Publish a new version of the privacy policy. Privacy officers only.",
        permission_classes=[IsPrivacyOfficer],
    )
    async def publish_policy_version(
        self, info: Info, input: PublishPolicyVersionInput
    ) -> PublishPolicyVersionPayload:
        return await mutate(
            info,
            lambda work: policy.publish_policy_version(
                work.session,
                work.actor,
                version=input.version,
                summary=input.summary,
                material=input.material,
                request_id=work.request_id,
            ),
            lambda published, errors: PublishPolicyVersionPayload(
                policy=PolicyVersion.from_model(published.policy) if published else None,
                notified=published.notified if published else 0,
                errors=errors,
            ),
        )
