"""Signing in and out, passwords, and the sessions a person can see and end."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from auth.rate_limits import Door
from auth.tokens import SESSION_COOKIE
from models import Account, AuthSession, NotificationKind, Role, utcnow
from resolvers import account as account_use_cases
from tests.helpers import (
    LOGIN,
    ME,
    PASSWORD,
    assert_session_refused,
    codes,
    count_statements,
    gql,
    outbox,
    post,
    signed_up,
    signed_up_through_the_api,
)

LOGIN_WAIT = """
mutation Login($input: LoginInput!) {
  login(input: $input) { token errors { field message code retryAfter } }
}
"""
LOGOUT = "mutation { logout { ok errors { code } } }"
CHANGE_PASSWORD = """
mutation Change($input: ChangePasswordInput!) {
  changePassword(input: $input) { account { email } errors { field code } }
}
"""
REQUEST_EMAIL_CHANGE = """
mutation Change($input: EmailChangeInput!) {
  requestEmailChange(input: $input) { errors { field code } }
}
"""
CONFIRM_EMAIL_CHANGE = """
mutation Confirm($token: String!) {
  confirmEmailChange(input: {token: $token}) { email errors { field code } }
}
"""
REQUEST_RESET = """
mutation Request($email: String!) {
  requestPasswordReset(input: {email: $email}) { ok errors { code } }
}
"""
RESET = """
mutation Reset($input: ResetPasswordInput!) { resetPassword(input: $input) { ok errors { code } } }
"""
REVOKE = """
mutation Revoke($id: ID!) { revokeSession(id: $id) { errors { field code } } }
"""
SESSIONS = "{ me { sessions { id userAgent current lastUsedAt expiresAt } } }"


async def login(client: httpx.AsyncClient, email: str, password: str, **headers: str) -> dict:
    body = await gql(
        client, LOGIN, {"input": {"email": email, "password": password}}, headers=headers
    )
    payload: dict = body["data"]["login"]
    return payload


def from_address(app: object, address: str) -> httpx.AsyncClient:
    """A client whose requests come from the given address (as uvicorn reports the peer)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


class TestLogin:
    async def test_unknown_email_and_wrong_password_answer_alike(self, client) -> None:
        await signed_up(client)
        unknown = await login(client, "nobody@example.com", PASSWORD)
        wrong = await login(client, "ada@example.com", "wrong password")

        assert codes(unknown) == codes(wrong) == ["INVALID_CREDENTIALS"]
        assert unknown["errors"][0]["message"] == wrong["errors"][0]["message"]
        assert unknown["token"] is None and wrong["token"] is None

    async def test_signs_in_with_the_email_in_any_case(self, client) -> None:
        await signed_up(client)
        payload = await login(client, " ADA@example.com", PASSWORD, **{"User-Agent": "Phone/1.0"})

        assert payload["errors"] == []
        me = await gql(client, ME, token=payload["token"])
        agents = [s["userAgent"] for s in me["data"]["me"]["sessions"] if s["current"]]
        assert agents == ["Phone/1.0"]

    async def test_too_many_failures_are_refused_saying_how_long_to_wait(self, client) -> None:
        await signed_up(client)
        allowed = Door.LOGIN_PER_ACCOUNT_AND_NEW_CLIENT.limit.amount  # never signed in here
        answers = [
            codes(await login(client, "ada@example.com", "wrong guess")) for _ in range(allowed)
        ]

        refused = await post(
            client, LOGIN_WAIT, {"input": {"email": "ada@example.com", "password": PASSWORD}}
        )

        assert answers == [["INVALID_CREDENTIALS"]] * allowed
        [error] = refused.json()["data"]["login"]["errors"]
        wait = int(refused.headers["Retry-After"])
        assert 0 < wait <= 15 * 60
        assert error["code"] == "RATE_LIMITED" and error["retryAfter"] == wait
        assert error["message"].startswith("Too many sign-in attempts; try again in ")
        assert refused.headers["RateLimit"] == f'"login-per-account-and-new-client";r=0;t={wait}'
        assert "retry-after" not in (await post(client, ME)).headers

    async def test_only_failures_count(self, client) -> None:
        await signed_up(client)
        allowed = Door.LOGIN_PER_ACCOUNT_AND_CLIENT.limit.amount
        signed_in = [await login(client, "ada@example.com", PASSWORD) for _ in range(allowed + 2)]
        failed = [
            codes(await login(client, "ada@example.com", "wrong guess")) for _ in range(allowed + 1)
        ]

        assert [payload["errors"] for payload in signed_in] == [[]] * (allowed + 2)
        assert failed == [["INVALID_CREDENTIALS"]] * allowed + [["RATE_LIMITED"]]

    @pytest.mark.usefixtures("standard_password_cost")
    async def test_an_outdated_hash_is_upgraded_on_login(self, client, database) -> None:
        await signed_up(client)
        weaker = PasswordHasher(memory_cost=8192, time_cost=1, parallelism=1).hash(PASSWORD)
        async with database.session() as session:
            await session.execute(update(Account).values(password_hash=weaker))
            await session.commit()

        assert (await login(client, "ada@example.com", PASSWORD))["errors"] == []

        async with database.session() as session:
            stored = await session.scalar(select(Account.password_hash))
        assert stored is not None and stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def guess_from_many_places(app: object, email: str, places: int = 20) -> list[list[str]]:
    """Wrong passwords from one place after another, each until it is refused: more than the
    whole account once allowed from every place together (100 an hour). Each place's answers."""
    answers = []
    for place in range(1, places + 1):
        async with from_address(app, f"198.51.{place}.1") as guesser:
            tries = Door.LOGIN_PER_ACCOUNT_AND_NEW_CLIENT.limit.amount + 1
            answers.append(
                [codes(await login(guesser, email, "wrong"))[0] for _ in range(tries)][-2:]
            )
    return answers


class TestLoginLockout:
    """Guessing is slowed where it comes from, without locking the owner out from anywhere
    else."""

    async def test_guesses_from_one_place_leave_the_owner_in_elsewhere(self, app, client) -> None:
        await signed_up(client)
        allowed = Door.LOGIN_PER_ACCOUNT_AND_NEW_CLIENT.limit.amount
        async with from_address(app, "198.51.100.7") as guesser:
            answers = [
                codes(await login(guesser, "ada@example.com", "wrong")) for _ in range(allowed + 1)
            ]
            async with from_address(app, "203.0.113.9") as owner:
                elsewhere = await login(owner, "ada@example.com", PASSWORD)
            right_password_from_there = await login(guesser, "ada@example.com", PASSWORD)

        assert answers[:allowed] == [["INVALID_CREDENTIALS"]] * allowed
        assert answers[allowed] == ["RATE_LIMITED"]
        assert elsewhere["errors"] == [] and elsewhere["token"]
        assert codes(right_password_from_there) == ["RATE_LIMITED"]

    async def test_addresses_of_one_ipv6_network_are_one_place(self, app, client) -> None:
        # Anyone holding an IPv6 /64 (the usual grant to one home or server) has billions of
        # addresses to rotate through.
        await signed_up(client)
        allowed = Door.LOGIN_PER_ACCOUNT_AND_NEW_CLIENT.limit.amount
        answers = []
        for host in range(1, allowed + 2):
            async with from_address(app, f"2001:db8:1:1::{host:x}") as guesser:
                answers.append(codes(await login(guesser, "ada@example.com", "wrong")))
        async with from_address(app, "2001:db8:1:2::1") as owner:
            next_network = await login(owner, "ada@example.com", PASSWORD)

        assert answers[:allowed] == [["INVALID_CREDENTIALS"]] * allowed
        assert answers[allowed] == ["RATE_LIMITED"]
        assert next_network["errors"] == []

    async def test_the_place_where_the_owner_signed_up_gets_more_tries_than_a_new_one(
        self, app
    ) -> None:
        async with from_address(app, "203.0.113.9") as owner:
            await signed_up_through_the_api(owner)
            at_home = [codes(await login(owner, "ada@example.com", "wrong"))[0] for _ in range(11)]
        async with from_address(app, "192.0.2.1") as newcomer:
            new_place = [
                codes(await login(newcomer, "ada@example.com", "wrong"))[0] for _ in range(6)
            ]

        assert at_home == ["INVALID_CREDENTIALS"] * 10 + ["RATE_LIMITED"]
        assert new_place == ["INVALID_CREDENTIALS"] * 5 + ["RATE_LIMITED"]

    # A hundred password checks: once is enough, as the counters are not in the database.
    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    async def test_a_guess_spread_over_many_places_locks_the_owner_out_nowhere(self, app) -> None:
        async with from_address(app, "203.0.113.9") as owner:
            await signed_up_through_the_api(owner)

        answers = await guess_from_many_places(app, "ada@example.com")

        # Each place is slowed by its own failures.
        assert answers == [["INVALID_CREDENTIALS", "RATE_LIMITED"]] * len(answers)
        async with from_address(app, "203.0.113.9") as owner:
            where_the_owner_signed_up = await login(owner, "ada@example.com", PASSWORD)
        async with from_address(app, "192.0.2.1") as newcomer:
            from_a_new_place = await login(newcomer, "ada@example.com", PASSWORD)
        assert where_the_owner_signed_up["errors"] == []
        assert from_a_new_place["errors"] == []

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    async def test_staff_made_on_the_command_line_are_locked_out_nowhere(
        self, app, database
    ) -> None:
        async with database.transaction() as session:
            await account_use_cases.create_staff(
                session,
                email="officer@example.com",
                password=PASSWORD,
                display_name="Officer",
                role=Role.PRIVACY_OFFICER,
            )

        await guess_from_many_places(app, "officer@example.com")

        async with from_address(app, "192.0.2.1") as officer:
            assert (await login(officer, "officer@example.com", PASSWORD))["errors"] == []

    async def test_a_refused_attempt_costs_no_hashing_and_no_query(
        self, app, client, monkeypatch
    ) -> None:
        await signed_up(client)
        client.cookies.clear()
        for _ in range(10):
            await login(client, "ada@example.com", "wrong")
        checked: list[object] = []
        verify = account_use_cases.verify_password

        async def counted(*args: str | None) -> tuple[bool, str | None]:
            checked.append(args)
            return await verify(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(account_use_cases, "verify_password", counted)
        with count_statements(app.state.services.database.engine) as statements:
            refused = await login(client, "ada@example.com", PASSWORD)

        assert codes(refused) == ["RATE_LIMITED"]
        assert checked == []
        assert statements == []


class TestSessionCredentials:
    async def test_me_is_null_when_signed_out(self, client) -> None:
        body = await gql(client, ME)
        assert body["data"]["me"] is None

    async def test_an_unknown_token_is_refused(self, client) -> None:
        assert_session_refused(await gql(client, ME, token="made-up-token"))

    async def test_an_expired_session_is_refused(self, client, database) -> None:
        token = await signed_up(client)
        async with database.session() as session:
            await session.execute(
                update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1))
            )
            await session.commit()
        assert_session_refused(await gql(client, ME, token=token))

    async def test_only_a_hash_of_the_token_is_stored(self, client, database) -> None:
        token = await signed_up(client)
        async with database.session() as session:
            stored = list(await session.scalars(select(AuthSession.token_hash)))
        assert len(stored) == 1 and token not in stored[0]

    async def test_cookie_works_for_json_requests(self, client) -> None:
        await signed_up_through_the_api(client)
        assert client.cookies.get(SESSION_COOKIE)
        body = await gql(client, ME)
        assert body["data"]["me"]["email"] == "ada@example.com"

    async def test_cookie_is_ignored_on_what_could_be_a_cross_site_form_post(self, client) -> None:
        await signed_up_through_the_api(client)
        as_form = await client.post(
            "/graphql", data={"query": LOGOUT}, headers={"Origin": "https://evil.example"}
        )
        assert as_form.status_code in (400, 415) or "errors" in as_form.json()
        as_get = await client.get("/graphql", params={"query": "{ me { email } }"})
        assert as_get.json()["data"]["me"] is None
        # The session survived: nothing was done with the cookie.
        assert (await gql(client, ME))["data"]["me"]["email"] == "ada@example.com"

    async def test_a_custom_header_lets_a_get_query_use_the_cookie(self, client) -> None:
        await signed_up_through_the_api(client)
        response = await client.get(
            "/graphql",
            params={"query": "{ me { email } }"},
            headers={"X-Requested-With": "fetch"},
        )
        assert response.json()["data"]["me"]["email"] == "ada@example.com"


class TestLogout:
    async def test_needs_sign_in(self, client) -> None:
        body = await gql(client, LOGOUT)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert body["data"] is None

    async def test_ends_this_session_only(self, client) -> None:
        await signed_up(client)
        phone = (await login(client, "ada@example.com", PASSWORD))["token"]
        laptop = (await login(client, "ada@example.com", PASSWORD))["token"]

        body = await gql(client, LOGOUT, token=phone)

        assert body["data"]["logout"]["ok"] is True
        assert_session_refused(await gql(client, ME, token=phone))
        assert (await gql(client, ME, token=laptop))["data"]["me"] is not None


class TestChangePassword:
    async def test_needs_sign_in(self, client) -> None:
        variables = {"input": {"currentPassword": PASSWORD, "newPassword": "another long one"}}
        body = await gql(client, CHANGE_PASSWORD, variables)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_wrong_current_password(self, client) -> None:
        token = await signed_up(client)
        variables = {"input": {"currentPassword": "not it at all", "newPassword": "x" * 12}}
        body = await gql(client, CHANGE_PASSWORD, variables, token=token)
        errors = body["data"]["changePassword"]["errors"]
        assert errors == [{"field": "currentPassword", "code": "INVALID_CREDENTIALS"}]

    async def test_weak_new_password(self, client) -> None:
        token = await signed_up(client)
        variables = {"input": {"currentPassword": PASSWORD, "newPassword": "12345678"}}
        body = await gql(client, CHANGE_PASSWORD, variables, token=token)
        errors = body["data"]["changePassword"]["errors"]
        assert errors == [{"field": "newPassword", "code": "WEAK_PASSWORD"}]
        assert (await login(client, "ada@example.com", PASSWORD))["errors"] == []

    async def test_guessing_the_current_password_is_rate_limited(self, client) -> None:
        token = await signed_up(client)
        variables = {"input": {"currentPassword": "a wrong guess", "newPassword": "x" * 12}}
        answers = [
            (await gql(client, CHANGE_PASSWORD, variables, token=token))["data"]["changePassword"][
                "errors"
            ][0]["code"]
            for _ in range(11)
        ]
        assert answers[:10] == ["INVALID_CREDENTIALS"] * 10
        assert answers[10] == "RATE_LIMITED"
        # The same limit guards every other place that asks for the password again.
        delete = """mutation { requestAccountDeletion(input: {password: "correct horse battery"})
                    { errors { code } } }"""
        body = await gql(client, delete, token=token)
        assert body["data"]["requestAccountDeletion"]["errors"][0]["code"] == "RATE_LIMITED"

    async def test_changes_it_and_signs_out_other_devices(self, client) -> None:
        token = await signed_up(client)
        other = (await login(client, "ada@example.com", PASSWORD))["token"]
        variables = {"input": {"currentPassword": PASSWORD, "newPassword": "a new passphrase"}}

        body = await gql(client, CHANGE_PASSWORD, variables, token=token)

        assert body["data"]["changePassword"]["errors"] == []
        assert (await gql(client, ME, token=other))["data"]["me"] is None
        assert (await gql(client, ME, token=token))["data"]["me"] is not None
        assert codes(await login(client, "ada@example.com", PASSWORD)) == ["INVALID_CREDENTIALS"]
        assert (await login(client, "ada@example.com", "a new passphrase"))["errors"] == []

    async def test_voids_an_email_change_and_reset_links_started_before(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        move = {"input": {"newEmail": "thief@example.com", "currentPassword": PASSWORD}}
        moved = await gql(client, REQUEST_EMAIL_CHANGE, move, token=token)
        assert moved["data"]["requestEmailChange"]["errors"] == []
        [stolen] = await outbox(database, NotificationKind.EMAIL_CONFIRMATION)
        await gql(client, REQUEST_RESET, {"email": "ada@example.com"})
        [reset_message] = await outbox(database, NotificationKind.PASSWORD_RESET)
        variables = {"input": {"currentPassword": PASSWORD, "newPassword": "a new passphrase"}}

        body = await gql(client, CHANGE_PASSWORD, variables, token=token)

        assert body["data"]["changePassword"]["errors"] == []
        confirmed = await gql(client, CONFIRM_EMAIL_CHANGE, {"token": stolen.secret})
        assert codes(confirmed["data"]["confirmEmailChange"]) == ["NOT_FOUND"]
        reset = {"token": reset_message.secret, "newPassword": "the thief's passphrase"}
        answer = await gql(client, RESET, {"input": reset})
        assert codes(answer["data"]["resetPassword"]) == ["NOT_FOUND"]
        me = await gql(client, "{ me { email pendingEmail } }", token=token)
        assert me["data"]["me"] == {"email": "ada@example.com", "pendingEmail": None}
        assert (await login(client, "ada@example.com", "a new passphrase"))["errors"] == []


class TestRevokeSession:
    async def test_needs_sign_in(self, client) -> None:
        body = await gql(client, REVOKE, {"id": "00000000-0000-0000-0000-000000000000"})
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_someone_elses_session_is_not_found(self, client) -> None:
        ada = await signed_up(client)
        bob = await signed_up(client, email="bob@example.com")
        bob_session = (await gql(client, SESSIONS, token=bob))["data"]["me"]["sessions"][0]["id"]

        for unknown in (bob_session, "not-a-uuid"):
            body = await gql(client, REVOKE, {"id": unknown}, token=ada)
            assert body["data"]["revokeSession"]["errors"] == [{"field": "id", "code": "NOT_FOUND"}]
        assert (await gql(client, ME, token=bob))["data"]["me"] is not None

    async def test_ends_a_lost_device(self, client) -> None:
        laptop = await signed_up(client)
        phone = (await login(client, "ada@example.com", PASSWORD, **{"User-Agent": "Lost"}))[
            "token"
        ]
        sessions = (await gql(client, SESSIONS, token=laptop))["data"]["me"]["sessions"]
        assert len(sessions) == 2
        lost = next(s for s in sessions if s["userAgent"] == "Lost")
        assert lost["current"] is False

        body = await gql(client, REVOKE, {"id": lost["id"]}, token=laptop)

        assert body["data"]["revokeSession"]["errors"] == []
        assert (await gql(client, ME, token=phone))["data"]["me"] is None
        remaining = (await gql(client, SESSIONS, token=laptop))["data"]["me"]["sessions"]
        assert [s["current"] for s in remaining] == [True]
