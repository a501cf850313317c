"""Privacy policy versions."""

from __future__ import annotations

from datetime import datetime

import strawberry

from models import PolicyVersion as PolicyVersionModel
from resolvers import policy


@strawberry.type(description="A published version of the privacy policy.")
class PolicyVersion:
    version: str
    published_at: datetime
    summary: str

    @classmethod
    def from_model(cls, model: PolicyVersionModel) -> PolicyVersion:
        return cls(version=model.version, published_at=model.published_at, summary=model.summary)


@strawberry.type
class PolicyQuery:
    @strawberry.field(description="The privacy policy in force. Needs no sign-in.")
    async def current_policy(self, info: strawberry.Info) -> PolicyVersion:
        async with info.context.db() as session:
            return PolicyVersion.from_model(await policy.current_policy(session))
