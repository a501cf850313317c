"""Profiles as others see them: each audience enforced per viewer, and search-engine indexing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from models import AuditEntry, Database, Role
from resolvers.account import create_staff
from tests.helpers import PASSWORD, changed, logged_in, post, signed_up, signup

PROFILE = """
query Profile($id: ID!) {
  publicProfile(id: $id) { id displayName email phone searchEngineIndexing }
}
"""
OWNER_EMAIL = "ada@example.com"
OWNER_PHONE = "+447400123456"
VIEWERS = ("anonymous", "member", "owner", "staff")
# Staff see a profile as any member does: their reads of personal data go through the audited
# staff fields, with a reason.
SEEN_BY = {
    "PUBLIC": {"anonymous", "member", "owner", "staff"},
    "MEMBERS": {"member", "owner", "staff"},
    "PRIVATE": {"owner"},
}


@dataclass(frozen=True)
class People:
    """An owner whose profile is looked at, and a bearer token for each kind of viewer."""

    owner_id: str
    staff_id: str
    tokens: dict[str, str | None]

    @property
    def owner(self) -> str:
        token = self.tokens["owner"]
        assert token is not None
        return token


async def people(client: httpx.AsyncClient, database: Database) -> People:
    owner = await signup(client, email=OWNER_EMAIL, phone=OWNER_PHONE)
    member = await signed_up(client, email="bob@example.com", displayName="Bob")
    async with database.transaction() as session:
        staff_account = await create_staff(
            session,
            email="sam@example.com",
            password=PASSWORD,
            display_name="Sam from Support",
            role=Role.SUPPORT,
        )
    staff = await logged_in(client, "sam@example.com")
    # Signing up and in set a session cookie, which the anonymous viewer must not send.
    client.cookies.clear()
    tokens = {"anonymous": None, "member": member, "owner": owner["token"], "staff": staff}
    return People(owner["account"]["id"], str(staff_account.id), tokens)


async def look_up(
    client: httpx.AsyncClient, id: str, token: str | None = None
) -> tuple[dict[str, Any] | None, httpx.Response]:
    response = await post(client, PROFILE, {"id": id}, token=token)
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["publicProfile"], response


class TestPublicProfile:
    async def test_unknown_malformed_and_staff_ids_are_null(self, client, database) -> None:
        everyone = await people(client, database)

        for id in (str(uuid.uuid4()), "not-a-uuid", "", everyone.staff_id):
            for viewer in ("anonymous", "member"):
                profile, response = await look_up(client, id, everyone.tokens[viewer])
                assert profile is None, (id, viewer)
                assert response.headers["X-Robots-Tag"] == "noindex"

    async def test_who_sees_the_profile(self, client, database) -> None:
        everyone = await people(client, database)
        await changed(
            client, "updateVisibility", {"email": "PUBLIC", "phone": "PUBLIC"}, token=everyone.owner
        )

        for audience, seen_by in SEEN_BY.items():
            await changed(client, "updateVisibility", {"profile": audience}, token=everyone.owner)
            for viewer in VIEWERS:
                profile, _ = await look_up(client, everyone.owner_id, everyone.tokens[viewer])
                if viewer in seen_by:
                    assert profile == {
                        "id": everyone.owner_id,
                        "displayName": "Ada Lovelace",
                        "email": OWNER_EMAIL,
                        "phone": OWNER_PHONE,
                        "searchEngineIndexing": False,
                    }, (audience, viewer)
                else:
                    assert profile is None, (audience, viewer)

    @pytest.mark.parametrize(("field", "value"), [("email", OWNER_EMAIL), ("phone", OWNER_PHONE)])
    async def test_who_sees_a_contact_field(self, client, database, field: str, value: str) -> None:
        everyone = await people(client, database)
        await changed(client, "updateVisibility", {"profile": "PUBLIC"}, token=everyone.owner)

        for audience, seen_by in SEEN_BY.items():
            await changed(client, "updateVisibility", {field: audience}, token=everyone.owner)
            for viewer in VIEWERS:
                profile, _ = await look_up(client, everyone.owner_id, everyone.tokens[viewer])
                assert profile is not None and profile["displayName"] == "Ada Lovelace"
                expected = value if viewer in seen_by else None
                assert profile[field] == expected, (audience, viewer)


class TestStaffReads:
    STAFF_ACCOUNT = """
    query($id: ID!, $reason: String!) { staffAccount(id: $id, reason: $reason) { email phone } }
    """
    REASON = "Ticket 8812: the person asked what we hold"

    async def test_public_profile_hides_private_fields_from_staff_unaudited(
        self, client, database
    ) -> None:
        everyone = await people(client, database)
        await changed(client, "updateVisibility", {"profile": "PUBLIC"}, token=everyone.owner)

        profile, _ = await look_up(client, everyone.owner_id, everyone.tokens["staff"])

        assert profile is not None and profile["displayName"] == "Ada Lovelace"
        assert profile["email"] is None and profile["phone"] is None
        async with database.session() as session:
            assert list(await session.scalars(select(AuditEntry))) == []

    async def test_the_audited_staff_field_shows_them_with_a_reason(self, client, database) -> None:
        everyone = await people(client, database)
        variables = {"id": everyone.owner_id, "reason": self.REASON}

        response = await post(client, self.STAFF_ACCOUNT, variables, token=everyone.tokens["staff"])

        assert response.json()["data"]["staffAccount"] == {
            "email": OWNER_EMAIL,
            "phone": OWNER_PHONE,
        }
        async with database.session() as session:
            [entry] = list(await session.scalars(select(AuditEntry)))
        assert str(entry.account_id) == everyone.owner_id
        assert str(entry.staff_id) == everyone.staff_id and entry.reason == self.REASON

    async def test_staff_do_not_see_a_reported_profile_through_it(
        self, app, client, database
    ) -> None:
        everyone = await people(client, database)
        await changed(client, "updateVisibility", {"profile": "PUBLIC"}, token=everyone.owner)
        report = """
        mutation($id: ID!) { reportChildAccount(input: {accountId: $id, details: "In year 5"}) {
          errors { code } } }
        """
        # Reports from two places meet the bar that hides an adult's profile until reviewed.
        await post(client, report, {"id": everyone.owner_id})
        elsewhere = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=elsewhere, base_url="http://testserver") as other:
            await post(other, report, {"id": everyone.owner_id})

        for viewer in ("member", "staff"):
            profile, _ = await look_up(client, everyone.owner_id, everyone.tokens[viewer])
            assert profile is None, viewer


class TestSearchEngineIndexing:
    async def test_only_a_public_profile_with_indexing_on_may_be_indexed(self, client) -> None:
        owner = await signup(client)
        token, owner_id = owner["token"], owner["account"]["id"]
        client.cookies.clear()
        cases = [
            # Each builds on the one before: (change, viewer, visible, searchEngineIndexing, header)
            ({}, None, False, None, "noindex"),
            ({"profile": "PUBLIC"}, None, True, False, "noindex"),
            ({"searchEngineIndexing": True}, None, True, True, None),
            ({"profile": "MEMBERS"}, token, True, False, "noindex"),
        ]

        for settings, viewer, visible, indexing, robots in cases:
            if settings:
                await changed(client, "updateVisibility", settings, token=token)
            profile, response = await look_up(client, owner_id, viewer)
            assert (profile is not None) == visible, settings
            if profile is not None:
                assert profile["searchEngineIndexing"] is indexing, settings
            assert response.headers.get("X-Robots-Tag") == robots, settings
