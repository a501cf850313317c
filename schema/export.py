"""Data portability: a link to download everything held about the signed-in person."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.permissions import IsAuthenticated
from resolvers import export
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.mutations import mutate_prepared


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
        services = info.context.services
        return await mutate_prepared(
            info,
            lambda preparation: export.request_data_export(
                services.limiter,
                preparation.actor,
                download_link=services.links.export_download,
                valid_hours=services.config.export_valid_hours,
            ),
            lambda link, errors: DataExportPayload(
                url=link.url if link else None,
                expires_at=link.expires_at if link else None,
                errors=errors,
            ),
        )
