"""API keys for machine clients: privacy officers create, list and revoke them."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.api_keys import Uses
from auth.permissions import IsPrivacyOfficer
from models import ApiKey, ApiScope
from resolvers import api_keys
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.ids import parse_id
from schema.mutations import mutate

Info = strawberry.Info[RequestContext]
strawberry.enum(
    ApiScope,
    name="ApiScope",
    description="What an API key may call: CONSENT_READ (`consent:read`) consentStatus, "
    "SUPPRESSIONS_READ (`suppressions:read`) suppressedAccounts.",
)
REASON = "Why: kept in the audit log."


@strawberry.type(name="ApiKey", description="A key a machine client calls the sender API with.")
class ApiKeyType:
    id: strawberry.ID
    name: str = strawberry.field(description="Which client uses it, as named when it was made.")
    prefix: str = strawberry.field(
        description="The key's first characters, to tell keys apart; the key itself is never "
        "shown again after it was made."
    )
    scopes: list[ApiScope] = strawberry.field(description="What the key may read.")
    created_at: datetime
    created_by: strawberry.ID = strawberry.field(description="The privacy officer who made it.")
    revoked_at: datetime | None = strawberry.field(
        description="When it was revoked; null while it works."
    )
    use_count: int = strawberry.field(
        description="Calls made with the key. Each API process writes its counts about once a "
        "minute: a count read through another process may be up to a minute behind."
    )
    last_used_at: datetime | None = strawberry.field(
        description="The last call made with it, as far as the counts written show."
    )

    @classmethod
    def from_model(cls, model: ApiKey, unwritten: Uses | None) -> ApiKeyType:
        scopes: list[ApiScope] = sorted(model.scope_set(), key=lambda scope: scope.value)
        last_used = [t for t in (model.last_used_at, unwritten and unwritten.last_used_at) if t]
        return cls(
            id=strawberry.ID(str(model.id)),
            name=model.name,
            prefix=model.prefix,
            scopes=scopes,
            created_at=model.created_at,
            created_by=strawberry.ID(str(model.created_by)),
            revoked_at=model.revoked_at,
            use_count=model.use_count + (unwritten.count if unwritten else 0),
            last_used_at=max(last_used, default=None),
        )


def _shown(info: Info, model: ApiKey) -> ApiKeyType:
    return ApiKeyType.from_model(model, info.context.services.key_usage.pending(model.id))


@strawberry.input(description="A new key for a machine client, and why it is needed.")
class CreateApiKeyInput:
    name: str = strawberry.field(description="Which client will use it, such as `mailer`.")
    scopes: list[ApiScope] = strawberry.field(
        description="What it may read: only what the client needs."
    )
    reason: str = strawberry.field(description=REASON)


@strawberry.input(description="The key to refuse from now on, and why.")
class RevokeApiKeyInput:
    id: strawberry.ID
    reason: str = strawberry.field(description=REASON)


@strawberry.type(description="The new key, shown once, or why it was not made.")
class CreateApiKeyPayload:
    api_key: ApiKeyType | None = strawberry.field(default=None, description="The key's record.")
    key: str | None = strawberry.field(
        default=None,
        description="The key itself (`pk_...`), shown this once: only its hash is kept. The "
        "client sends it as `Authorization: Bearer <key>`.",
    )
    errors: list[UserErrorType]


@strawberry.type(description="The key after the change, or why it was refused.")
class ApiKeyPayload:
    api_key: ApiKeyType | None = strawberry.field(default=None, description="The key's record.")
    errors: list[UserErrorType]


@strawberry.type
class ApiKeysQuery:
    @strawberry.field(
        permission_classes=[IsPrivacyOfficer],
        description="API keys, newest first; revoked ones only with includeRevoked.",
    )
    async def api_keys(
        self, info: Info, include_revoked: bool = False, first: int = 50
    ) -> list[ApiKeyType]:
        found = await info.context.answer(
            lambda session: api_keys.list_api_keys(
                session, include_revoked=include_revoked, first=first
            )
        )
        return [_shown(info, key) for key in found]


@strawberry.type
class ApiKeysMutation:
    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="A key for a machine client, with the scopes it needs. Audited.",
    )
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> CreateApiKeyPayload:
        def answer(
            made: tuple[ApiKey, str] | None, errors: list[UserErrorType]
        ) -> CreateApiKeyPayload:
            if made is None:
                return CreateApiKeyPayload(errors=errors)
            model, key = made
            return CreateApiKeyPayload(api_key=_shown(info, model), key=key, errors=[])

        return await mutate(
            info,
            lambda work: api_keys.create_api_key(
                work.session,
                work.actor,
                name=input.name,
                scopes=input.scopes,
                reason=input.reason,
                request_id=work.request_id,
            ),
            answer,
        )

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="Refuse the key from now on; it stays listed as revoked. Audited.",
    )
    async def revoke_api_key(self, info: Info, input: RevokeApiKeyInput) -> ApiKeyPayload:
        key_id = parse_id(input.id)
        return await mutate(
            info,
            lambda work: api_keys.revoke_api_key(
                work.session,
                work.actor,
                key_id=key_id,
                reason=input.reason,
                request_id=work.request_id,
            ),
            lambda model, errors: ApiKeyPayload(
                api_key=_shown(info, model) if model else None, errors=errors
            ),
        )
