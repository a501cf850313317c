"""Policy versions: publishing (privacy officers only), notices of material changes in the
outbox, whether a person must accept again, and accepting through the consent ledger."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, update

from models import (
    Account,
    AuditEntry,
    ConsentActor,
    ConsentEvent,
    Database,
    Notification,
    NotificationKind,
    Role,
    utcnow,
)
from resolvers import consent
from resolvers.account import create_staff
from tests.conftest import SEED_POLICY_VERSION
from tests.helpers import LOGIN, codes, count_statements, gql, run_cli, signed_up
from tests.test_deletion import cancel_deletion, login, request_deletion

STAFF_PASSWORD = "staff passphrase 2026"

PUBLISH = """
mutation Publish($input: PublishPolicyVersionInput!) {
  publishPolicyVersion(input: $input) {
    policy { version summary material publishedAt }
    notified
    errors { field code message }
  }
}
"""
ACCEPT = """
mutation Accept($version: String!) {
  acceptPolicy(input: {version: $version}) {
    account { acceptedPolicyVersion policy { acceptanceRequired } }
    errors { field code message }
  }
}
"""
MY_POLICY = "{ me { policy { acceptedVersion currentVersion acceptanceRequired } } }"
CURRENT = "{ currentPolicy { version material } }"


async def staff_token(
    client: httpx.AsyncClient, database: Database, role: Role = Role.PRIVACY_OFFICER
) -> str:
    email = f"{role.value.replace('_', '-')}@example.com"
    async with database.transaction() as session:
        await create_staff(
            session, email=email, password=STAFF_PASSWORD, display_name="Staff", role=role
        )
    body = await gql(client, LOGIN, {"input": {"email": email, "password": STAFF_PASSWORD}})
    token: str = body["data"]["login"]["token"]
    return token


async def publish(
    client: httpx.AsyncClient,
    token: str | None,
    version: str,
    *,
    material: bool = True,
    summary: str = "We now keep server logs for 30 days instead of 90.",
) -> dict[str, Any]:
    variables = {"input": {"version": version, "summary": summary, "material": material}}
    return await gql(client, PUBLISH, variables, token=token)


async def published(
    client: httpx.AsyncClient, token: str, version: str, *, material: bool = True
) -> dict[str, Any]:
    body = await publish(client, token, version, material=material)
    payload: dict[str, Any] = body["data"]["publishPolicyVersion"]
    assert payload["errors"] == [], payload
    return payload


async def my_policy(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    body = await gql(client, MY_POLICY, token=token)
    policy: dict[str, Any] = body["data"]["me"]["policy"]
    return policy


async def outbox(database: Database) -> list[Notification]:
    async with database.session() as session:
        return list(await session.scalars(select(Notification).order_by(Notification.recipient)))


async def policy_events(database: Database) -> list[ConsentEvent]:
    async with database.session() as session:
        rows = await session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.key == consent.POLICY_KEY)
            .order_by(ConsentEvent.account_id, ConsentEvent.seq)
        )
        return list(rows)


async def add_people(database: Database, count: int, *, start: int = 0) -> None:
    """Accounts written straight into the table: signing up hundreds would hash hundreds."""
    now = utcnow()
    rows = [
        {
            "id": uuid.uuid4(),
            "email": f"person{number}@example.com",
            "password_hash": "not-a-hash",
            "display_name": f"Person {number}",
            "role": Role.USER,
            "accepted_policy_version": SEED_POLICY_VERSION,
            "policy_accepted_at": now,
            "ledger_seq": 0,
            "created_at": now,
            "updated_at": now,
        }
        for number in range(start, start + count)
    ]
    async with database.session() as session:
        await session.execute(insert(Account), rows)
        await session.commit()


def graphql_code(body: dict[str, Any]) -> str:
    code: str = body["errors"][0]["extensions"]["code"]
    return code


class TestPublishPolicyVersion:
    async def test_anonymous_callers_are_unauthenticated(self, client) -> None:
        body = await publish(client, None, "2026-01")

        assert graphql_code(body) == "UNAUTHENTICATED"
        current = await gql(client, CURRENT)
        assert current["data"]["currentPolicy"]["version"] == SEED_POLICY_VERSION

    @pytest.mark.parametrize("role", [Role.USER, Role.SUPPORT])
    async def test_people_and_support_staff_are_forbidden(self, client, database, role) -> None:
        token = (
            await signed_up(client)
            if role is Role.USER
            else await staff_token(client, database, role)
        )

        body = await publish(client, token, "2026-01")

        assert graphql_code(body) == "FORBIDDEN"
        assert await outbox(database) == []
        current = await gql(client, CURRENT)
        assert current["data"]["currentPolicy"]["version"] == SEED_POLICY_VERSION

    async def test_a_version_already_published_is_refused(self, client, database) -> None:
        await signed_up(client)
        officer = await staff_token(client, database)
        await published(client, officer, "2026-01")

        for version in ("2026-01", " 2026-01 ", SEED_POLICY_VERSION):
            payload = (await publish(client, officer, version))["data"]["publishPolicyVersion"]
            assert payload["policy"] is None
            assert codes(payload) == ["POLICY_VERSION_EXISTS"]
            assert payload["errors"][0]["field"] == "version"

        assert len(await outbox(database)) == 1  # from the first publish only

    @pytest.mark.parametrize(
        ("version", "summary", "field"),
        [
            ("", "Something changed.", "version"),
            ("2026 01", "Something changed.", "version"),
            ("v" * 33, "Something changed.", "version"),
            ("<b>2026</b>", "Something changed.", "version"),
            ("2026-01", "   ", "summary"),
            ("2026-01", "x" * 5001, "summary"),
        ],
    )
    async def test_bad_input_is_refused(self, client, database, version, summary, field) -> None:
        officer = await staff_token(client, database)

        body = await publish(client, officer, version, summary=summary)

        payload = body["data"]["publishPolicyVersion"]
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [(field, "INVALID_INPUT")]
        current = await gql(client, CURRENT)
        assert current["data"]["currentPolicy"]["version"] == SEED_POLICY_VERSION

    async def test_an_officer_publishes_a_version_that_is_in_force_at_once(
        self, client, database
    ) -> None:
        officer = await staff_token(client, database)

        payload = await published(client, officer, "2026-01", material=False)

        assert payload["policy"]["version"] == "2026-01"
        assert payload["policy"]["material"] is False
        current = await gql(client, CURRENT)
        assert current["data"]["currentPolicy"] == {"version": "2026-01", "material": False}

    async def test_a_material_version_asks_each_person_again_and_sends_each_one_notice(
        self, client, database
    ) -> None:
        ada = await signed_up(client)
        bob = await signed_up(client, email="bob@example.com")
        await signed_up(client, email="leaving@example.com")
        async with database.session() as session:
            await session.execute(
                update(Account)
                .where(Account.email == "leaving@example.com")
                .values(deletion_requested_at=utcnow(), deletion_due_at=utcnow() + timedelta(30))
            )
            await session.commit()
        await staff_token(client, database, Role.SUPPORT)
        officer = await staff_token(client, database)

        payload = await published(client, officer, "2026-01", material=True)

        assert payload["notified"] == 2
        for token in (ada, bob):
            assert await my_policy(client, token) == {
                "acceptedVersion": SEED_POLICY_VERSION,
                "currentVersion": "2026-01",
                "acceptanceRequired": True,
            }
        messages = await outbox(database)
        assert [m.recipient for m in messages] == ["ada@example.com", "bob@example.com"]
        async with database.session() as session:
            owners = dict((await session.execute(select(Account.email, Account.id))).all())
        for message in messages:
            assert message.account_id == owners[message.recipient]
            assert message.kind is NotificationKind.POLICY_UPDATE
            assert "2026-01" in message.subject
            assert "30 days instead of 90" in message.body
            assert message.sent_at is None
            assert message.id.version == 4
        assert messages[0].id != messages[1].id

    async def test_an_update_that_is_not_material_asks_nobody_and_is_a_service_update(
        self, client, database
    ) -> None:
        ada = await signed_up(client)
        officer = await staff_token(client, database)

        payload = await published(client, officer, "2025-08", material=False)

        assert payload["notified"] == 1
        [message] = await outbox(database)
        assert message.kind is NotificationKind.POLICY_MINOR_UPDATE
        assert "2025-08" in message.subject and "nothing to accept" in message.body
        assert await my_policy(client, ada) == {
            "acceptedVersion": SEED_POLICY_VERSION,
            "currentVersion": "2025-08",
            "acceptanceRequired": False,
        }

    async def test_a_minor_update_does_not_hide_an_unaccepted_material_one(
        self, client, database
    ) -> None:
        ada = await signed_up(client)
        officer = await staff_token(client, database)
        await published(client, officer, "2026-01", material=True)

        await published(client, officer, "2026-02", material=False)

        policy = await my_policy(client, ada)
        assert policy["currentVersion"] == "2026-02"
        assert policy["acceptanceRequired"] is True


class TestAcceptPolicy:
    async def test_anonymous_callers_are_unauthenticated(self, client) -> None:
        body = await gql(client, ACCEPT, {"version": SEED_POLICY_VERSION})

        assert graphql_code(body) == "UNAUTHENTICATED"

    @pytest.mark.parametrize("version", [SEED_POLICY_VERSION, "1999-01", ""])
    async def test_an_outdated_or_unknown_version_is_refused(
        self, client, database, version
    ) -> None:
        ada = await signed_up(client)
        officer = await staff_token(client, database)
        await published(client, officer, "2026-01")
        before = await policy_events(database)

        body = await gql(client, ACCEPT, {"version": version}, token=ada)

        payload = body["data"]["acceptPolicy"]
        assert payload["account"] is None
        assert codes(payload) == ["POLICY_OUTDATED"]
        assert "2026-01" in payload["errors"][0]["message"]
        assert [e.id for e in await policy_events(database)] == [e.id for e in before]
        assert (await my_policy(client, ada))["acceptanceRequired"] is True

    async def test_accepting_clears_the_requirement_and_is_recorded(self, client, database) -> None:
        ada = await signed_up(client)
        officer = await staff_token(client, database)
        await published(client, officer, "2026-01")

        body = await gql(client, ACCEPT, {"version": "2026-01"}, token=ada)

        payload = body["data"]["acceptPolicy"]
        assert payload == {
            "account": {
                "acceptedPolicyVersion": "2026-01",
                "policy": {"acceptanceRequired": False},
            },
            "errors": [],
        }
        assert await my_policy(client, ada) == {
            "acceptedVersion": "2026-01",
            "currentVersion": "2026-01",
            "acceptanceRequired": False,
        }
        newest = (await policy_events(database))[-1]
        assert (newest.old_value, newest.new_value) == (SEED_POLICY_VERSION, "2026-01")
        assert newest.actor is ConsentActor.PERSON
        assert newest.policy_version == "2026-01"
        async with database.session() as session:
            account = (
                await session.scalars(select(Account).where(Account.email == "ada@example.com"))
            ).one()
            _, broken = await consent.verify_ledger(session)
        assert account.accepted_policy_version == "2026-01"
        assert account.policy_accepted_at == newest.occurred_at
        assert broken is None

    async def test_accepting_again_changes_nothing(self, client, database) -> None:
        ada = await signed_up(client)
        officer = await staff_token(client, database)
        await published(client, officer, "2026-01")
        await gql(client, ACCEPT, {"version": "2026-01"}, token=ada)
        before = await policy_events(database)

        body = await gql(client, ACCEPT, {"version": "2026-01"}, token=ada)

        assert body["data"]["acceptPolicy"]["errors"] == []
        assert [e.id for e in await policy_events(database)] == [e.id for e in before]

    async def test_a_new_person_has_nothing_to_accept(self, client) -> None:
        ada = await signed_up(client)

        assert await my_policy(client, ada) == {
            "acceptedVersion": SEED_POLICY_VERSION,
            "currentVersion": SEED_POLICY_VERSION,
            "acceptanceRequired": False,
        }


class TestStatementCount:
    async def test_notifying_30_or_300_people_takes_the_same_statements(
        self, client, database, app
    ) -> None:
        officer = await staff_token(client, database)
        engine = app.state.services.database.engine
        await add_people(database, 30)
        with count_statements(engine) as few:
            small = await published(client, officer, "2026-01")
        await add_people(database, 270, start=30)
        with count_statements(engine) as many:
            large = await published(client, officer, "2026-02")

        assert (small["notified"], large["notified"]) == (30, 300)
        assert len(await outbox(database)) == 330
        # Session lookup, version taken?, insert the version inside a savepoint (SAVEPOINT,
        # INSERT, RELEASE: two officers may race to publish it), the languages the people
        # speak (the notice is translated), one INSERT ... SELECT for notices per language,
        # the webhook outbox row, and the audit entry.
        assert len(many) == len(few) == 9, many
        async with database.session() as session:
            audited = list(await session.scalars(select(AuditEntry.action)))
        assert audited == ["policy.publish", "policy.publish"]


class TestNotificationsCommand:
    async def test_lists_unsent_notices_and_marks_them_sent(
        self, client, database, database_url, tmp_path
    ) -> None:
        await signed_up(client)
        await signed_up(client, email="bob@example.com")
        officer = await staff_token(client, database)
        await published(client, officer, "2026-01")
        subject = "We have updated our privacy policy (2026-01)"

        code, out, err = await run_cli(database_url, tmp_path, "notifications")
        assert code == 0, err
        assert sorted(out.splitlines()) == [
            f"ada@example.com\t{subject}",
            f"bob@example.com\t{subject}",
        ]
        assert all(m.sent_at is None for m in await outbox(database))

        code, out, err = await run_cli(database_url, tmp_path, "notifications", "--mark-sent")
        assert code == 0, err
        assert out.splitlines()[-1] == "Marked 2 as sent."
        assert all(m.sent_at is not None for m in await outbox(database))

        code, out, err = await run_cli(database_url, tmp_path, "notifications")
        assert (code, out) == (0, "No unsent notifications.\n")

    async def test_a_limit_marks_only_what_it_lists(
        self, client, database, database_url, tmp_path
    ) -> None:
        await add_people(database, 3)
        officer = await staff_token(client, database)
        await published(client, officer, "2026-01")

        code, out, err = await run_cli(
            database_url, tmp_path, "notifications", "--mark-sent", "--limit", "2"
        )

        assert code == 0, err
        lines = out.splitlines()
        assert len([line for line in lines if "\t" in line]) == 2
        assert "Marked 2 as sent." in lines
        assert "There may be more" in lines[-1]
        assert [m.sent_at is None for m in await outbox(database)].count(True) == 1


class TestNoticesMissedWhilePendingDeletion:
    """Nobody pending deletion is sent a policy notice; keeping the account after all brings
    the legal notices of the material versions published meanwhile."""

    async def test_cancelling_brings_the_notices_of_material_versions_missed(
        self, client, database
    ) -> None:
        assert (await request_deletion(client, await signed_up(client)))["errors"] == []
        officer = await staff_token(client, database)
        assert (await published(client, officer, "2026-01"))["notified"] == 0
        assert (await published(client, officer, "2026-02", material=False))["notified"] == 0
        assert (await published(client, officer, "2026-03"))["notified"] == 0
        token = await login(client)

        assert (await cancel_deletion(client, token))["errors"] == []

        body = await gql(client, "{ me { messages { kind subject } } }", token=token)
        notices = [m["subject"] for m in body["data"]["me"]["messages"]]
        assert sorted(s for s in notices if "privacy policy" in s) == [
            "We have updated our privacy policy (2026-01)",
            "We have updated our privacy policy (2026-03)",
        ]
        assert (await my_policy(client, token))["acceptanceRequired"] is True

    async def test_a_version_accepted_while_pending_is_not_announced_again(
        self, client, database
    ) -> None:
        assert (await request_deletion(client, await signed_up(client)))["errors"] == []
        officer = await staff_token(client, database)
        await published(client, officer, "2026-01")
        token = await login(client)
        accepted = await gql(client, ACCEPT, {"version": "2026-01"}, token=token)
        assert accepted["data"]["acceptPolicy"]["errors"] == []

        assert (await cancel_deletion(client, token))["errors"] == []

        body = await gql(client, "{ me { messages { kind } } }", token=token)
        assert "POLICY_UPDATE" not in {m["kind"] for m in body["data"]["me"]["messages"]}
