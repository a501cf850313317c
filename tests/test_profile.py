"""Correcting personal data, and changing the email address with a confirmation code."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import select

from models import Base, Notification, NotificationKind, ProfileChange
from resolvers import notifications
from tests.helpers import LOGIN, PASSWORD, gql, run_cli, signed_up

UPDATE = """
mutation Update($input: UpdateProfileInput!) {
  updateProfile(input: $input) {
    account { displayName phone country locale isMinor
              communicationPreferences { channel topic enabled } }
    errors { field code }
  }
}
"""
REQUEST_CHANGE = """
mutation Change($input: EmailChangeInput!) {
  requestEmailChange(input: $input) { account { email pendingEmail } errors { field code } }
}
"""
CONFIRM = """
mutation Confirm($token: String!) {
  confirmEmailChange(input: {token: $token}) { email errors { field code } }
}
"""


async def changes_recorded(database) -> list[tuple[str, object]]:
    async with database.session() as session:
        rows = await session.execute(
            select(ProfileChange.field, ProfileChange.changed_by).order_by(ProfileChange.field)
        )
        return [tuple(row) for row in rows]


async def tables_holding(database, text: str) -> list[str]:
    """The tables with a value that contains `text`, in any column of any row."""
    found = []
    async with database.session() as session:
        for table in Base.metadata.sorted_tables:
            rows = await session.execute(select(table))
            if any(text in str(value) for row in rows for value in row):
                found.append(table.name)
    return found


class TestUpdateProfile:
    async def test_needs_sign_in(self, client) -> None:
        body = await gql(client, UPDATE, {"input": {"displayName": "X"}})
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    @pytest.mark.parametrize(
        ("field", "value", "code"),
        [
            ("displayName", "", "INVALID_DISPLAY_NAME"),
            ("phone", "123", "INVALID_PHONE"),
            ("country", "ZZ", "INVALID_COUNTRY"),
            ("locale", "klingon", "INVALID_INPUT"),
        ],
    )
    async def test_bad_values_change_nothing(self, client, database, field, value, code) -> None:
        token = await signed_up(client)
        body = await gql(client, UPDATE, {"input": {"locale": "en", field: value}}, token=token)
        assert body["data"]["updateProfile"]["errors"][0]["code"] == code
        me = await gql(client, "{ me { displayName locale } }", token=token)
        assert me["data"]["me"] == {"displayName": "Ada Lovelace", "locale": None}
        assert await changes_recorded(database) == []

    async def test_fields_left_out_stay(self, client, database) -> None:
        token = await signed_up(client, phone="+447400123456")
        body = await gql(
            client, UPDATE, {"input": {"displayName": "Ada King", "locale": "en-GB"}}, token=token
        )
        account = body["data"]["updateProfile"]["account"]
        assert account["displayName"] == "Ada King"
        assert account["locale"] == "en-GB"
        assert account["phone"] == "+447400123456"
        assert account["country"] == "GB"
        assert await changes_recorded(database) == [("display_name", None), ("locale", None)]

    async def test_records_which_field_changed_never_the_values(
        self, client, database, caplog
    ) -> None:
        caplog.set_level(logging.DEBUG)
        token = await signed_up(client, phone="+447400123456")
        await gql(client, UPDATE, {"input": {"phone": "+447400999111"}}, token=token)
        async with database.session() as session:
            rows = list(await session.scalars(select(ProfileChange)))
        assert [row.field for row in rows] == ["phone"]
        stored = repr([vars(row) for row in rows])
        assert "7400123456" not in stored and "7400999111" not in stored
        assert "7400123456" not in caplog.text

    async def test_moving_country_can_make_a_person_a_minor(self, client) -> None:
        token = await signed_up(client, birthDate="2011-01-01", country="GB")
        body = await gql(client, UPDATE, {"input": {"country": "de"}}, token=token)
        assert body["data"]["updateProfile"]["account"]["country"] == "DE"
        assert body["data"]["updateProfile"]["account"]["isMinor"] is True

    async def test_removing_the_phone_switches_text_messages_off(self, client) -> None:
        token = await signed_up(client, phone="+447400123456")
        toggle = """mutation { setCommunicationPreference(input:
            {channel: SMS, topic: SECURITY_ALERTS, enabled: true}) { errors { code } } }"""
        assert (await gql(client, toggle, token=token))["data"]["setCommunicationPreference"][
            "errors"
        ] == []

        body = await gql(client, UPDATE, {"input": {"phone": ""}}, token=token)

        account = body["data"]["updateProfile"]["account"]
        assert account["phone"] is None
        sms = [p for p in account["communicationPreferences"] if p["channel"] == "SMS"]
        assert sms and not any(p["enabled"] for p in sms)
        history = await gql(
            client,
            '{ me { consentHistory(first: 1, key: "communication.sms.security_alerts") '
            "{ edges { node { newValue actor } } } } }",
            token=token,
        )
        node = history["data"]["me"]["consentHistory"]["edges"][0]["node"]
        assert node == {"newValue": "false", "actor": "PERSON"}


class TestEmailChange:
    async def outbox(self, database, kind: NotificationKind) -> list[Notification]:
        async with database.session() as session:
            return list(
                await session.scalars(select(Notification).where(Notification.kind == kind))
            )

    async def test_needs_the_current_password(self, client, database) -> None:
        token = await signed_up(client)
        variables = {"input": {"newEmail": "new@example.com", "currentPassword": "wrong one"}}
        body = await gql(client, REQUEST_CHANGE, variables, token=token)
        assert body["data"]["requestEmailChange"]["errors"] == [
            {"field": "currentPassword", "code": "INVALID_CREDENTIALS"}
        ]
        assert await self.outbox(database, NotificationKind.EMAIL_CONFIRMATION) == []

    async def test_a_taken_address_answers_as_a_free_one_and_its_owner_is_told(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        other = await signed_up(client, email="carol@example.com")
        await signed_up(client, email="bob@example.com")

        taken = await gql(
            client,
            REQUEST_CHANGE,
            {"input": {"newEmail": "BOB@example.com", "currentPassword": PASSWORD}},
            token=token,
        )
        free = await gql(
            client,
            REQUEST_CHANGE,
            {"input": {"newEmail": "dan@example.com", "currentPassword": PASSWORD}},
            token=other,
        )

        assert taken["data"]["requestEmailChange"] == {
            "account": {"email": "ada@example.com", "pendingEmail": "bob@example.com"},
            "errors": [],
        }
        assert free["data"]["requestEmailChange"] == {
            "account": {"email": "carol@example.com", "pendingEmail": "dan@example.com"},
            "errors": [],
        }
        confirmations = await self.outbox(database, NotificationKind.EMAIL_CONFIRMATION)
        assert [message.recipient for message in confirmations] == ["dan@example.com"]
        [notice] = await self.outbox(database, NotificationKind.EMAIL_CHANGE_ATTEMPT_EXISTING)
        assert notice.recipient == "bob@example.com"
        assert notice.secret is None
        assert "nothing was changed" in notifications.render(notice)
        # Asking again within the hour tells the owner nothing more.
        again = {"input": {"newEmail": "bob@example.com", "currentPassword": PASSWORD}}
        await gql(client, REQUEST_CHANGE, again, token=token)
        assert len(await self.outbox(database, NotificationKind.EMAIL_CHANGE_ATTEMPT_EXISTING)) == 1
        bob = await gql(
            client, LOGIN, {"input": {"email": "bob@example.com", "password": PASSWORD}}
        )
        assert bob["data"]["login"]["account"]["email"] == "bob@example.com"

    async def test_the_new_address_waits_for_its_code(self, client, database) -> None:
        token = await signed_up(client)
        variables = {"input": {"newEmail": "Ada.New@example.com", "currentPassword": PASSWORD}}

        body = await gql(client, REQUEST_CHANGE, variables, token=token)

        assert body["data"]["requestEmailChange"]["account"] == {
            "email": "ada@example.com",
            "pendingEmail": "ada.new@example.com",
        }
        [message] = await self.outbox(database, NotificationKind.EMAIL_CONFIRMATION)
        assert message.recipient == "ada.new@example.com"
        code = re.search(r"code in the app: (\S+)", notifications.render(message))
        assert code
        # Until redeemed, the old address still signs in.
        login = {"input": {"email": "ada@example.com", "password": PASSWORD}}
        assert (await gql(client, LOGIN, login))["data"]["login"]["errors"] == []

        confirmed = await gql(client, CONFIRM, {"token": code[1]})

        assert confirmed["data"]["confirmEmailChange"] == {
            "email": "ada.new@example.com",
            "errors": [],
        }
        me = await gql(client, "{ me { email pendingEmail } }", token=token)
        assert me["data"]["me"] == {"email": "ada.new@example.com", "pendingEmail": None}
        [warning] = await self.outbox(database, NotificationKind.EMAIL_CHANGED)
        assert warning.recipient == "ada@example.com"
        again = await gql(client, CONFIRM, {"token": code[1]})
        assert again["data"]["confirmEmailChange"]["errors"][0]["code"] == "NOT_FOUND"

    async def test_the_code_is_kept_only_until_the_message_is_sent(
        self, client, database, database_url, tmp_path
    ) -> None:
        token = await signed_up(client)
        variables = {"input": {"newEmail": "new@example.com", "currentPassword": PASSWORD}}
        await gql(client, REQUEST_CHANGE, variables, token=token)
        async with database.session() as session:
            [message] = await notifications.pending(session)
            delivered = notifications.render(message)
        code = re.search(r"code in the app: (\S+)", delivered)
        assert code and f"confirm-email?token={code[1]}" in delivered

        status, out, err = await run_cli(database_url, tmp_path, "notifications", "--mark-sent")

        assert status == 0, err
        assert out.splitlines()[-1] == "Marked 1 as sent."
        assert await tables_holding(database, code[1]) == []
        # Still the person's code: the message they received confirms the change.
        confirmed = await gql(client, CONFIRM, {"token": code[1]})
        assert confirmed["data"]["confirmEmailChange"]["errors"] == []

    async def test_a_wrong_or_expired_code_changes_nothing(self, client, database) -> None:
        token = await signed_up(client)
        variables = {"input": {"newEmail": "new@example.com", "currentPassword": PASSWORD}}
        await gql(client, REQUEST_CHANGE, variables, token=token)

        for guess in ("made-up", "", "x" * 300):
            body = await gql(client, CONFIRM, {"token": guess})
            assert body["data"]["confirmEmailChange"]["errors"][0]["code"] == "NOT_FOUND"
        me = await gql(client, "{ me { email } }", token=token)
        assert me["data"]["me"]["email"] == "ada@example.com"
