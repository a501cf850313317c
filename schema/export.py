"""Data portability: a link to download everything held about the signed-in person."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.actor import Actor
from auth.permissions import IsAuthenticated
from resolvers import export
from resolvers.errors import Rejected
from schema.context import RequestContext
from schema.errors import UserErrorType, to_user_errors


@strawberry.type
class DataExportPayload:
    url: str | None = strawberry.field(
        description=(
            "Download the export (JSON, described by docs/export-schema.json) once, without "
            "signing in: whoever holds the link can use it, so keep it private."
        )
    )
    expires_at: datetime | None = strawberry.field(description="The link stops working then.")
    errors: list[UserErrorType]


@strawberry.type
class ExportMutation:
    @strawberry.mutation(
        description="A single-use link to a machine-readable copy of all your data.",
        permission_classes=[IsAuthenticated],
    )
    async def request_data_export(self, info: strawberry.Info[RequestContext]) -> DataExportPayload:
        context = info.context
        actor = await context.actor()
        assert isinstance(actor, Actor)  # guaranteed by IsAuthenticated
        config = context.services.config
        try:
            async with context.db() as session:
                link = await export.request_data_export(
                    session,
                    context.services.limiter,
                    actor,
                    public_url=config.public_url,
                    valid_hours=config.export_valid_hours,
                    due_days=config.request_due_days,
                )
        except Rejected as rejected:
            return DataExportPayload(
                url=None, expires_at=None, errors=to_user_errors(rejected.errors)
            )
        return DataExportPayload(url=link.url, expires_at=link.expires_at, errors=[])
