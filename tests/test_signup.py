"""Signing up: validation of each field, the policy version, and the under-13 age gate."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import func, inspect, select, text

from models import Account, AuthSession, Database, NotificationKind, utcnow
from resolvers.age import today_everywhere
from tests.helpers import (
    CONFIRM_SIGNUP,
    ME,
    SIGNUP,
    codes,
    database_behind,
    gql,
    outbox,
    signed_up,
    signup,
    signup_code,
    signup_input,
)
from web.cookies import AGE_GATE_COOKIE


def years_ago(years: int, today: date | None = None) -> date:
    today = today or today_everywhere(utcnow())
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


async def count_accounts(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Account)) or 0)


async def table_dump(database: Database) -> str:
    """Every row of every table, as text, to search for what must not be there."""

    def table_names(connection: object) -> list[str]:
        return inspect(connection).get_table_names()  # type: ignore[arg-type]

    async with database.engine.connect() as connection:
        names = await connection.run_sync(table_names)
        dump = []
        for name in names:
            rows = (await connection.execute(text(f'SELECT * FROM "{name}"'))).all()
            dump.extend(repr(tuple(row)) for row in rows)
    return "\n".join(dump)


class TestSignup:
    async def test_creates_the_account_and_signs_in(self, client: httpx.AsyncClient) -> None:
        payload = await signup(client, email="  Ada@Example.COM ", phone="07400 123456")

        assert payload["errors"] == []
        account = payload["account"]
        assert account["email"] == "ada@example.com"
        assert account["phone"] == "+447400123456"
        assert account["country"] == "GB"
        assert account["role"] == "USER"
        assert account["isMinor"] is False
        assert account["acceptedPolicyVersion"] == "2025-07"
        me = await gql(client, ME, token=payload["token"])
        assert me["data"]["me"]["id"] == account["id"]

    async def test_sets_an_httponly_session_cookie_for_the_web(
        self, client: httpx.AsyncClient
    ) -> None:
        await gql(client, SIGNUP, {"input": signup_input()})
        code = await signup_code(database_behind(client), "ada@example.com")
        variables = {"input": {"email": "ada@example.com", "code": code}}
        response = await client.post(
            "/graphql", json={"query": CONFIRM_SIGNUP, "variables": variables}
        )
        cookie = response.headers["set-cookie"]
        assert "privacy_session=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        me = await gql(client, ME)
        assert me["data"]["me"]["email"] == "ada@example.com"

    @pytest.mark.usefixtures("standard_password_cost")
    async def test_password_is_stored_as_argon2id(self, client, database) -> None:
        await signed_up(client)
        async with database.session() as session:
            stored = await session.scalar(select(Account.password_hash))
        assert stored is not None
        assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")

    async def test_email_is_unique_whatever_its_case(self, client, database) -> None:
        await signed_up(client)
        again = await signup(client, email="ADA@example.com ")
        # The same answer as for a new address: the owner is told by mail instead.
        assert again["errors"] == [] and again["confirmationSent"] is True
        assert again["token"] is None
        assert await count_accounts(database) == 1
        notices = await outbox(database, NotificationKind.SIGNUP_ATTEMPT_EXISTING)
        assert [notice.recipient for notice in notices] == ["ada@example.com"]

    @pytest.mark.parametrize(
        ("field", "value", "code"),
        [
            ("email", "not-an-email", "INVALID_EMAIL"),
            ("email", "a" * 250 + "@example.com", "INVALID_EMAIL"),
            ("password", "short", "WEAK_PASSWORD"),
            ("password", "x" * 129, "WEAK_PASSWORD"),
            ("password", "password123", "WEAK_PASSWORD"),
            ("password", "ada@example.com", "WEAK_PASSWORD"),
            ("displayName", "   ", "INVALID_DISPLAY_NAME"),
            ("displayName", "a\x07b", "INVALID_DISPLAY_NAME"),
            ("displayName", "a\x00b", "INVALID_INPUT"),
            ("country", "XX", "INVALID_COUNTRY"),
            ("country", "Germany", "INVALID_COUNTRY"),
            ("phone", "12", "INVALID_PHONE"),
            ("phone", "+44 20 7946 095", "INVALID_PHONE"),
            ("acceptPolicyVersion", "2019-01", "POLICY_OUTDATED"),
        ],
    )
    async def test_each_bad_field_gets_its_own_error(
        self, client, database, field: str, value: str, code: str
    ) -> None:
        payload = await signup(client, **{field: value})

        assert codes(payload) == [code]
        assert payload["errors"][0]["field"] == field
        assert payload["account"] is None
        assert await count_accounts(database) == 0

    async def test_reports_every_bad_field_at_once(self, client) -> None:
        payload = await signup(client, email="nope", password="short", country="ZZ")
        assert set(codes(payload)) == {"INVALID_EMAIL", "WEAK_PASSWORD", "INVALID_COUNTRY"}

    @pytest.mark.parametrize("birth_date", ["2999-01-01", "1850-06-01"])
    async def test_implausible_birth_date(self, client, database, birth_date: str) -> None:
        payload = await signup(client, birthDate=birth_date)
        assert codes(payload) == ["INVALID_BIRTH_DATE"]
        assert await count_accounts(database) == 0

    async def test_minor_by_country_is_recorded(self, client) -> None:
        fifteen = years_ago(15)
        german = await signup(client, email="de@example.com", birthDate=fifteen, country="DE")
        japanese = await signup(client, email="jp@example.com", birthDate=fifteen, country="JP")
        assert german["account"]["isMinor"] is True
        assert japanese["account"]["isMinor"] is False


class TestAgeGate:
    async def test_turns_away_an_under_13_and_stores_nothing(
        self, client: httpx.AsyncClient, database: Database, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        child = signup_input(
            email="young.child@example.com",
            displayName="Tiny Tim",
            phone="+447400999888",
            birthDate=years_ago(13) + timedelta(days=1),
        )
        response = await client.post(
            "/graphql", json={"query": SIGNUP, "variables": {"input": child}}
        )

        payload = response.json()["data"]["signup"]
        assert codes(payload) == ["AGE_RESTRICTED"]
        assert payload["confirmationSent"] is False
        message = payload["errors"][0]["message"]
        assert "13" not in message and "age" not in message.lower()
        stored = await table_dump(database)
        for secret in ("young.child@example.com", "Tiny Tim", "+447400999888", "7400999888"):
            assert secret not in stored
            assert secret not in caplog.text
            assert secret not in response.headers.get("set-cookie", "")
        assert await count_accounts(database) == 0

    async def test_a_second_try_with_another_date_is_refused_too(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        child = await signup(client, birthDate=years_ago(10))
        assert codes(child) == ["AGE_RESTRICTED"]
        cookie = client.cookies.get(AGE_GATE_COOKIE)
        assert cookie

        retry = await signup(client, birthDate=years_ago(30))

        assert codes(retry) == ["AGE_RESTRICTED"]
        assert await count_accounts(database) == 0

    async def test_a_client_without_a_cookie_jar_cannot_try_date_after_date(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        # Each refusal counts against the client's sign-up limit (20 an hour), as any attempt.
        answers = []
        for days in range(21):
            client.cookies.clear()  # the marker is thrown away each time
            child = await signup(client, birthDate=years_ago(13) + timedelta(days=days + 1))
            answers.append(codes(child))

        assert answers[:20] == [["AGE_RESTRICTED"]] * 20
        assert answers[20] == ["RATE_LIMITED"]
        client.cookies.clear()
        assert codes(await signup(client, birthDate=years_ago(30))) == ["RATE_LIMITED"]
        assert await count_accounts(database) == 0

    async def test_the_marker_is_httponly_and_lasts_a_day(self, client) -> None:
        response = await client.post(
            "/graphql",
            json={"query": SIGNUP, "variables": {"input": signup_input(birthDate=years_ago(8))}},
        )
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{AGE_GATE_COOKIE}=")
        assert "HttpOnly" in cookie
        assert "Max-Age=86400" in cookie

    async def test_a_forged_marker_is_ignored(self, client) -> None:
        client.cookies.set(AGE_GATE_COOKIE, "refused.forged.signature")
        payload = await signup(client)
        assert payload["errors"] == []

    async def test_the_13th_birthday_itself_is_old_enough(self, client) -> None:
        payload = await signup(client, birthDate=years_ago(13))
        assert payload["errors"] == []
        assert payload["account"]["isMinor"] is False  # GB: digital consent at 13


class TestCurrentPolicy:
    async def test_is_public(self, client) -> None:
        body = await gql(client, "{ currentPolicy { version publishedAt summary } }")
        policy = body["data"]["currentPolicy"]
        assert policy["version"] == "2025-07"
        assert policy["publishedAt"].startswith("2025-07-01T00:00:00")
        assert "13" in policy["summary"]


async def test_no_session_row_is_left_by_a_refused_signup(client, database) -> None:
    await signup(client, email="bad")
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(AuthSession)) == 0
