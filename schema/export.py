"""Data portability: a link to download everything held about the signed-in person."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.permissions import IsAuthenticated
from resolvers import export
from schema.context import RequestContext
from schema.errors import UserErrorType


@strawberry.type(description="A single-use download link for the export, or why none was made.")
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
        actor = await context.signed_in()
        config = context.services.config
        link, errors = await context.attempt_prepared(
            lambda _: export.request_data_export(
                context.services.limiter,
                actor,
                download_link=context.services.links.export_download,
                valid_hours=config.export_valid_hours,
            )
        )
        if link is None:
            return DataExportPayload(url=None, expires_at=None, errors=errors)
        return DataExportPayload(url=link.url, expires_at=link.expires_at, errors=[])
