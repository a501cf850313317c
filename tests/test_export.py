"""Data portability: asking for an export."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from app import create_app
from auth.tokens import hash_token
from models import (
    Account,
    Database,
    DataExport,
    PrivacyRequest,
    RequestKind,
    RequestStatus,
    utcnow,
)
from tests.conftest import make_config
from tests.helpers import codes, gql, signed_up

REQUEST_EXPORT = """
mutation { requestDataExport { url expiresAt errors { field message code } } }
"""


async def request_export(client: httpx.AsyncClient, token: str | None) -> dict[str, Any]:
    return await gql(client, REQUEST_EXPORT, token=token)


async def export_url(client: httpx.AsyncClient, token: str) -> str:
    """Ask for an export and return its link."""
    body = await request_export(client, token)
    payload = body["data"]["requestDataExport"]
    assert payload["errors"] == [], payload
    url: str = payload["url"]
    return url


async def account_id_of(database: Database, email: str) -> uuid.UUID:
    async with database.session() as session:
        return (await session.scalars(select(Account.id).where(Account.email == email))).one()


class TestRequestDataExport:
    async def test_anonymous_caller_is_unauthenticated(self, client, database) -> None:
        body = await request_export(client, token=None)

        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(DataExport)) == 0

    async def test_is_rate_limited_per_account(self, client, database) -> None:
        token = await signed_up(client)
        for _ in range(5):
            await export_url(client, token)

        payload = (await request_export(client, token))["data"]["requestDataExport"]

        assert codes(payload) == ["RATE_LIMITED"]
        assert payload["url"] is None and payload["expiresAt"] is None
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(DataExport)) == 5
            assert await session.scalar(select(func.count()).select_from(PrivacyRequest)) == 5
        # Another person is not held back by the first one's exports.
        other = await signed_up(client, email="bob@example.com")
        await export_url(client, other)

    async def test_gives_a_link_whose_token_is_stored_only_as_a_hash(
        self, clean_database_url, database
    ) -> None:
        config = make_config(
            clean_database_url, public_url="https://privacy.example", export_valid_hours=2
        )
        app = create_app(config)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            token = await signed_up(http)
            before = utcnow()
            body = await request_export(http, token)
        await app.state.services.database.dispose()

        payload = body["data"]["requestDataExport"]
        assert payload["errors"] == []
        assert payload["url"].startswith("https://privacy.example/exports/")
        link_token = payload["url"].rsplit("/", 1)[1]
        assert len(link_token) >= 43  # 32 random bytes
        async with database.session() as session:
            row = (await session.scalars(select(DataExport))).one()
        assert row.token_hash == hash_token(link_token) != link_token
        assert row.downloaded_at is None
        expected = before + timedelta(hours=2)
        assert abs(row.expires_at - expected) < timedelta(seconds=30)
        assert payload["expiresAt"].startswith(row.expires_at.isoformat()[:19])

    async def test_is_recorded_as_a_completed_privacy_request(self, client, database) -> None:
        token = await signed_up(client)
        await export_url(client, token)
        account_id = await account_id_of(database, "ada@example.com")

        async with database.session() as session:
            request = (await session.scalars(select(PrivacyRequest))).one()
        assert request.kind is RequestKind.EXPORT
        assert request.status is RequestStatus.COMPLETED
        assert request.account_id == request.requested_by == account_id
        assert request.handled_at is not None
        assert request.due_at - request.created_at == timedelta(days=30)
