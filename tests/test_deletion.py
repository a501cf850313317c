"""Deleting an account: the request, the grace period, cancelling, legal holds, and the purge that
erases everything but the pseudonymised proof of consent."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from auth.actor import Actor
from auth.tokens import SESSION_COOKIE, hash_token
from models import (
    Account,
    AuditEntry,
    AuthSession,
    ConsentEvent,
    Database,
    DataExport,
    DeliveryStatus,
    IdempotencyKey,
    LegalHold,
    Notification,
    NotificationKind,
    PrivacyRequest,
    ProfileChange,
    RequestKind,
    RequestStatus,
    Role,
    utcnow,
)
from resolvers import account as accounts
from resolvers import consent, erasure, notifications, unsubscribe
from resolvers import staff as staff_use_cases
from resolvers.catalogue import Topic
from resolvers.erasure import prune_expired
from resolvers.errors import Rejected
from resolvers.notifications import queue
from resolvers.requests import add_months, open_request
from tests.conftest import TEST_SECRET, client_of, make_config
from tests.helpers import (
    LOGIN,
    ME,
    PASSWORD,
    changed,
    codes,
    gql,
    run_cli,
    signed_up,
    staff_token,
)
from tests.test_signup import table_dump
from web.app import create_app
from workers.purge import PurgeReport, purge_due_accounts

REQUEST_DELETION = """
mutation Delete($password: String!) {
  requestAccountDeletion(input: {password: $password}) {
    account { id deletion { requestedAt dueAt } }
    errors { field code message }
  }
}
"""
CANCEL_DELETION = """
mutation { cancelAccountDeletion { account { deletion { dueAt } } errors { code message } } }
"""
ME_DELETION = "{ me { id deletion { requestedAt dueAt } } }"
TOGGLE = """
mutation Toggle($enabled: Boolean!, $key: String) {
  setCommunicationPreference(
    input: {channel: SMS, topic: NEWSLETTER, enabled: $enabled, idempotencyKey: $key}
  ) { errors { code } }
}
"""

ADA = {"email": "ada@example.com", "displayName": "Ada Lovelace", "phone": "+447400123456"}
# Everything that identifies Ada, as stored and as she might have typed it.
ADA_TRACES = (
    "ada@example.com",
    "Ada Lovelace",
    "Lovelace",
    "+447400123456",
    "7400123456",
    "ada.new@example.com",
)


async def login(client: httpx.AsyncClient, email: str = "ada@example.com", **headers: str) -> str:
    body = await gql(
        client, LOGIN, {"input": {"email": email, "password": PASSWORD}}, headers=headers
    )
    payload = body["data"]["login"]
    assert payload["errors"] == [], payload
    token: str = payload["token"]
    return token


async def request_deletion(
    client: httpx.AsyncClient, token: str, password: str = PASSWORD
) -> dict[str, Any]:
    body = await gql(client, REQUEST_DELETION, {"password": password}, token=token)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["requestAccountDeletion"]
    return payload


async def cancel_deletion(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    body = await gql(client, CANCEL_DELETION, token=token)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["cancelAccountDeletion"]
    return payload


async def account_id_of(database: Database, email: str = "ada@example.com") -> uuid.UUID:
    async with database.transaction() as session:
        return (await session.scalars(select(Account.id).where(Account.email == email))).one()


async def account_exists(database: Database, account_id: uuid.UUID) -> bool:
    async with database.transaction() as session:
        return await session.get(Account, account_id) is not None


async def make_due(database: Database, account_id: uuid.UUID, ago: timedelta) -> None:
    """Let time pass: the deletion date is `ago` in the past."""
    async with database.transaction() as session:
        await session.execute(
            update(Account).where(Account.id == account_id).values(deletion_due_at=utcnow() - ago)
        )


async def notices_sent(database: Database) -> None:
    """A mailer sends every message waiting in the outbox."""
    async with database.transaction() as session:
        waiting = await notifications.pending(session)
        await notifications.mark_sent(session, [message.id for message in waiting])


async def purge(database: Database, now: datetime | None = None) -> PurgeReport:
    return await purge_due_accounts(database, TEST_SECRET, now or utcnow())


async def staff(database: Database, role: Role = Role.PRIVACY_OFFICER) -> Actor:
    """A staff member as the lead's GraphQL layer would pass them in."""
    async with database.transaction() as session:
        account = await accounts.create_staff(
            session,
            email=f"{role.value}@example.com",
            password="staff passphrase 1",
            display_name="Olga Officer",
            role=role,
        )
    return Actor(account_id=account.id, session_id=uuid.uuid4(), role=account.role)


async def deletion_requests(database: Database, account_id: uuid.UUID) -> list[PrivacyRequest]:
    async with database.transaction() as session:
        rows = await session.scalars(
            select(PrivacyRequest)
            .where(
                PrivacyRequest.account_id == account_id,
                PrivacyRequest.kind == RequestKind.DELETION,
            )
            .order_by(PrivacyRequest.created_at)
        )
        return list(rows)


Link = tuple[int, str, str, str]


async def ledger_of(database: Database, account_id: uuid.UUID) -> list[Link]:
    """The account's chain, event by event: number, key, new value, hash."""
    async with database.transaction() as session:
        rows = await session.execute(
            select(ConsentEvent.seq, ConsentEvent.key, ConsentEvent.new_value, ConsentEvent.hash)
            .where(ConsentEvent.account_id == account_id)
            .order_by(ConsentEvent.seq)
        )
        return [(row.seq, row.key, row.new_value, row.hash) for row in rows]


async def verify_ledger(database: Database) -> tuple[int, consent.BrokenLink | None]:
    async with database.transaction() as session:
        return await consent.verify_ledger(session)


async def deleting(client: httpx.AsyncClient, database: Database, email: str) -> uuid.UUID:
    """Sign up, ask for deletion and let the grace period pass (the notice is sent); returns the
    account id."""
    token = await signed_up(client, email=email, displayName="Someone Else")
    assert (await request_deletion(client, token))["errors"] == []
    account_id = await account_id_of(database, email)
    await make_due(database, account_id, timedelta(minutes=1))
    await notices_sent(database)
    return account_id


class TestRequestAccountDeletion:
    async def test_anonymous_caller_must_sign_in(self, client) -> None:
        body = await gql(client, REQUEST_DELETION, {"password": PASSWORD})

        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_a_wrong_password_is_refused_and_schedules_nothing(
        self, client, database
    ) -> None:
        token = await signed_up(client)

        payload = await request_deletion(client, token, password="not my password")

        assert codes(payload) == ["INVALID_CREDENTIALS"]
        assert payload["errors"][0]["field"] == "password"
        assert payload["account"] is None
        me = await gql(client, ME_DELETION, token=token)
        assert me["data"]["me"]["deletion"] is None
        assert await deletion_requests(database, await account_id_of(database)) == []

    async def test_schedules_erasure_after_the_grace_period_and_tells_the_person(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        before = utcnow()

        payload = await request_deletion(client, token)

        assert payload["errors"] == []
        deletion = payload["account"]["deletion"]
        requested_at = datetime.fromisoformat(deletion["requestedAt"])
        due_at = datetime.fromisoformat(deletion["dueAt"])
        assert before <= requested_at <= utcnow()
        assert due_at - requested_at == timedelta(days=30)
        account_id = await account_id_of(database)
        (request,) = await deletion_requests(database, account_id)
        assert request.status is RequestStatus.OPEN
        assert request.requested_by == account_id
        assert request.due_at == due_at
        async with database.transaction() as session:
            (message,) = await session.scalars(select(Notification))
        assert message.kind is NotificationKind.DELETION_SCHEDULED
        assert message.recipient == "ada@example.com"
        assert f"{due_at.day} {due_at:%B %Y}" in message.subject
        assert f"{due_at:%H:%M} UTC" in message.body
        assert "sign in before then and cancel" in message.body.lower()

    async def test_signs_out_every_session_and_clears_the_web_cookie(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        phone = await login(client, **{"User-Agent": "Phone/1.0"})
        assert client.cookies.get(SESSION_COOKIE)

        payload = await request_deletion(client, token)

        assert payload["errors"] == []
        assert client.cookies.get(SESSION_COOKIE) is None
        for old_token in (token, phone):
            assert (await gql(client, ME, token=old_token))["data"]["me"] is None
        async with database.transaction() as session:
            assert await session.scalar(select(func.count()).select_from(AuthSession)) == 0

    async def test_signing_in_again_shows_the_pending_deletion(self, client) -> None:
        token = await signed_up(client)
        scheduled = (await request_deletion(client, token))["account"]["deletion"]

        again = await login(client)

        me = await gql(client, ME_DELETION, token=again)
        assert me["data"]["me"]["deletion"] == scheduled

    async def test_asking_again_keeps_the_date_already_set(self, client, database) -> None:
        token = await signed_up(client)
        first = (await request_deletion(client, token))["account"]["deletion"]

        second = await request_deletion(client, await login(client))

        assert second["errors"] == []
        assert second["account"]["deletion"] == first
        assert len(await deletion_requests(database, await account_id_of(database))) == 1
        async with database.transaction() as session:
            assert await session.scalar(select(func.count()).select_from(Notification)) == 1


class TestCancelAccountDeletion:
    async def test_anonymous_caller_must_sign_in(self, client) -> None:
        body = await gql(client, CANCEL_DELETION)

        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_with_nothing_scheduled_there_is_nothing_to_cancel(self, client) -> None:
        token = await signed_up(client)

        payload = await cancel_deletion(client, token)

        assert codes(payload) == ["NOT_FOUND"]

    async def test_cancelling_in_the_grace_period_keeps_the_account(self, client, database) -> None:
        await request_deletion(client, await signed_up(client))
        token = await login(client)

        payload = await cancel_deletion(client, token)

        assert payload == {"account": {"deletion": None}, "errors": []}
        me = await gql(client, ME_DELETION, token=token)
        assert me["data"]["me"]["deletion"] is None
        account_id = await account_id_of(database)
        (request,) = await deletion_requests(database, account_id)
        assert request.status is RequestStatus.CANCELLED
        assert request.handled_at is not None
        assert await purge(database, now=utcnow() + timedelta(days=365)) == PurgeReport(0, 0, 0)
        assert await account_exists(database, account_id)

    async def test_after_the_deletion_date_it_is_too_late(self, client, database) -> None:
        await request_deletion(client, await signed_up(client))
        token = await login(client)
        account_id = await account_id_of(database)
        await make_due(database, account_id, timedelta(seconds=1))

        payload = await cancel_deletion(client, token)

        assert codes(payload) == ["DELETION_NOT_CANCELLABLE"]
        me = await gql(client, ME_DELETION, token=token)
        assert me["data"]["me"]["deletion"] is not None
        (request,) = await deletion_requests(database, account_id)
        assert request.status is RequestStatus.OPEN

    async def test_a_deletion_staff_decided_on_cannot_be_cancelled(self, client, database) -> None:
        await signed_up(client)
        officer = await staff(database)
        account_id = await account_id_of(database)
        async with database.transaction() as session:
            await erasure.schedule_deletion(
                session,
                account_id,
                due_at=utcnow() + timedelta(days=7),
                requested_by=officer.account_id,
            )

        payload = await cancel_deletion(client, await login(client))

        assert codes(payload) == ["DELETION_NOT_CANCELLABLE"]
        assert "privacy team" in payload["errors"][0]["message"]


class TestScheduleDeletion:
    """What a review of a report of a child's account calls: no grace period."""

    async def test_an_unknown_account_is_not_found(self, database) -> None:
        async with database.transaction() as session:
            with pytest.raises(Rejected) as rejected:
                await erasure.schedule_deletion(
                    session, uuid.uuid4(), due_at=utcnow(), requested_by=uuid.uuid4()
                )
        assert rejected.value.errors[0].code.value == "NOT_FOUND"

    async def test_with_no_grace_period_the_purge_after_the_notice_erases_the_account(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        officer = await staff(database)
        account_id = await account_id_of(database)

        async with database.transaction() as session:
            await erasure.schedule_deletion(
                session, account_id, due_at=utcnow(), requested_by=officer.account_id
            )

        assert (await gql(client, ME, token=token))["data"]["me"] is None
        async with database.transaction() as session:
            (message,) = await session.scalars(select(Notification))
        assert "privacy team" in message.body
        await notices_sent(database)
        assert await purge(database) == PurgeReport(purged=1, held=0, failed=0)
        assert not await account_exists(database, account_id)
        alias = erasure.pseudonym(TEST_SECRET, account_id)
        (request,) = await deletion_requests(database, alias)
        assert request.status is RequestStatus.COMPLETED
        assert request.requested_by == officer.account_id


class TestPurge:
    async def test_before_the_deletion_date_nothing_is_purged(self, client, database) -> None:
        await request_deletion(client, await signed_up(client))
        dump = await table_dump(database)

        report = await purge(database)

        assert report == PurgeReport(purged=0, held=0, failed=0)
        assert await table_dump(database) == dump

    async def test_after_the_deletion_date_nothing_personal_is_left(self, client, database) -> None:
        token = await signed_up(client, **ADA)
        bystander = await signed_up(client, email="bob@example.com", displayName="Bob Builder")
        await login(client)  # a second device
        for enabled, key in ((True, "k-1"), (False, None)):
            await gql(client, TOGGLE, {"enabled": enabled, "key": key}, token=token)
        officer = await staff(database)
        account_id = await account_id_of(database)
        await self._fill_every_table(database, account_id, officer)
        ledger_before = await ledger_of(database, account_id)
        bob_id = await account_id_of(database, "bob@example.com")
        bob_before = await ledger_of(database, bob_id)
        assert (await request_deletion(client, token))["errors"] == []
        await make_due(database, account_id, timedelta(minutes=1))
        await notices_sent(database)

        report = await purge(database)

        assert report == PurgeReport(purged=1, held=0, failed=0)
        await notices_sent(database)  # the last message, which names only the address
        stored = await table_dump(database)
        for trace in ADA_TRACES:
            assert trace not in stored
        assert str(account_id) not in stored and account_id.hex not in stored
        assert await ledger_of(database, account_id) == []
        # The proof of consent stays, whole, under a pseudonym nobody can trace without the key.
        alias = erasure.pseudonym(TEST_SECRET, account_id)
        assert alias != account_id
        assert await ledger_of(database, alias) == ledger_before
        checked, broken = await verify_ledger(database)
        assert broken is None
        assert checked == len(ledger_before) + len(bob_before)
        # The records of rights exercised and of staff access stay too, under the same pseudonym.
        async with database.transaction() as session:
            requests = list(await session.scalars(select(PrivacyRequest)))
            assert {(r.kind, r.status) for r in requests} == {
                (RequestKind.COMPLAINT, RequestStatus.OPEN),
                (RequestKind.DELETION, RequestStatus.COMPLETED),
            }
            assert {(r.account_id, r.requested_by) for r in requests} == {(alias, alias)}
            assert all(r.details is r.subject is r.contact_email is None for r in requests)
            assert (await session.scalars(select(AuditEntry.account_id))).all() == [alias]
            assert (await session.scalars(select(LegalHold.account_id))).all() == [alias]
        # Bob is untouched, and Ada's address is free again.
        assert await ledger_of(database, bob_id) == bob_before
        assert (await gql(client, ME_DELETION, token=bystander))["data"]["me"]["id"]
        assert await signed_up(client, email="ada@example.com")

    @staticmethod
    async def _fill_every_table(database: Database, account_id: uuid.UUID, officer: Actor) -> None:
        """What the features built alongside this one would have stored about Ada."""
        now = utcnow()
        async with database.transaction() as session:
            await session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(pending_email="ada.new@example.com", locale="en-GB")
            )
            open_request(
                session,
                kind=RequestKind.COMPLAINT,
                account_id=account_id,
                requested_by=account_id,
                subject="Complaint from Ada Lovelace",
                details="Please call me on +447400123456 or write to ada@example.com.",
                contact_email="ada@example.com",
            )
            session.add_all(
                [
                    DataExport(
                        account_id=account_id,
                        token_hash=hash_token("export"),
                        expires_at=now + timedelta(hours=24),
                    ),
                    ProfileChange(account_id=account_id, field="phone"),
                    AuditEntry(
                        staff_id=officer.account_id,
                        action="view_account",
                        account_id=account_id,
                        reason="Complaint ticket 42",
                    ),
                    LegalHold(
                        account_id=account_id,
                        reason="Tax audit 2026",
                        set_by=officer.account_id,
                        released_by=officer.account_id,
                        released_at=now,
                    ),
                ]
            )

    async def test_a_legal_hold_keeps_the_account_until_released(self, client, database) -> None:
        account_id = await deleting(client, database, "held@example.com")
        officer = await staff(database)
        async with database.transaction() as session:
            hold = await erasure.set_legal_hold(session, officer, account_id, "Court order 7")
        dump = await table_dump(database)

        held = await purge(database)

        assert held == PurgeReport(purged=0, held=1, failed=0)
        assert await table_dump(database) == dump
        async with database.transaction() as session:
            released = await erasure.release_legal_hold(session, officer, hold.id)
        assert released.released_by == officer.account_id and released.released_at
        assert await purge(database) == PurgeReport(purged=1, held=0, failed=0)
        assert not await account_exists(database, account_id)

    async def test_a_second_run_finds_nothing_to_do_and_changes_nothing(
        self, client, database
    ) -> None:
        await deleting(client, database, "gone@example.com")
        assert (await purge(database)).purged == 1
        dump = await table_dump(database)

        again = await purge(database)

        assert again == PurgeReport(purged=0, held=0, failed=0)
        assert await table_dump(database) == dump

    async def test_a_failure_leaves_that_account_intact_and_a_rerun_finishes_it(
        self, client, database, monkeypatch, caplog
    ) -> None:
        first, second, third = [
            await deleting(client, database, f"{name}@example.com")
            for name in ("first", "second", "third")
        ]
        for account_id, days in ((first, 3), (second, 2), (third, 1)):
            await make_due(database, account_id, timedelta(days=days))
        second_ledger = await ledger_of(database, second)
        real_delete = erasure._delete_account

        async def fails_for_the_second(session: Any, account_id: uuid.UUID) -> None:
            # Every other step of the erasure has run by now: a failure in the middle.
            if account_id == second:
                raise RuntimeError("disk full")
            await real_delete(session, account_id)

        monkeypatch.setattr(erasure, "_delete_account", fails_for_the_second)

        report = await purge(database)

        assert report == PurgeReport(purged=2, held=0, failed=1)
        assert str(second) in caplog.text and "second@example.com" not in caplog.text
        assert not await account_exists(database, first)
        assert not await account_exists(database, third)
        await self._assert_intact(database, second, second_ledger)
        assert (await verify_ledger(database))[1] is None

        monkeypatch.undo()
        assert await purge(database) == PurgeReport(purged=1, held=0, failed=0)
        assert not await account_exists(database, second)
        assert await ledger_of(database, erasure.pseudonym(TEST_SECRET, second)) == second_ledger

    async def test_an_interrupted_run_leaves_each_account_erased_or_intact(
        self, client, database, monkeypatch
    ) -> None:
        first, second, third = [
            await deleting(client, database, f"{name}@example.com")
            for name in ("first", "second", "third")
        ]
        for account_id, days in ((first, 3), (second, 2), (third, 1)):
            await make_due(database, account_id, timedelta(days=days))
        second_ledger = await ledger_of(database, second)
        real_delete = erasure._delete_account

        async def interrupted_at_the_second(session: Any, account_id: uuid.UUID) -> None:
            if account_id == second:
                raise asyncio.CancelledError  # as when the scheduler stops the command
            await real_delete(session, account_id)

        monkeypatch.setattr(erasure, "_delete_account", interrupted_at_the_second)

        with pytest.raises(asyncio.CancelledError):
            await purge(database)

        assert not await account_exists(database, first)
        await self._assert_intact(database, second, second_ledger)
        assert await account_exists(database, third)
        monkeypatch.undo()
        assert await purge(database) == PurgeReport(purged=2, held=0, failed=0)
        assert (await verify_ledger(database))[1] is None

    @staticmethod
    async def _assert_intact(database: Database, account_id: uuid.UUID, ledger: list[Link]) -> None:
        """Nothing half-erased: the row, the ledger under the real id, the request as it was."""
        async with database.transaction() as session:
            account = await session.get_one(Account, account_id)
            assert account.email == "second@example.com"
            assert account.deletion_due_at is not None
        assert await ledger_of(database, account_id) == ledger
        (request,) = await deletion_requests(database, account_id)
        assert request.status is RequestStatus.OPEN
        alias = erasure.pseudonym(TEST_SECRET, account_id)
        assert await ledger_of(database, alias) == []


class TestLegalHolds:
    async def test_only_a_privacy_officer_may_set_one(self, client, database) -> None:
        await signed_up(client)
        support = await staff(database, Role.SUPPORT)
        async with database.transaction() as session:
            with pytest.raises(PermissionError):
                await erasure.set_legal_hold(
                    session, support, await account_id_of(database), "Court order 7"
                )

    async def test_a_hold_needs_a_reason(self, client, database) -> None:
        await signed_up(client)
        officer = await staff(database)
        async with database.transaction() as session:
            with pytest.raises(Rejected) as rejected:
                await erasure.set_legal_hold(session, officer, await account_id_of(database), " ")
        assert rejected.value.errors[0].field == "reason"

    async def test_a_hold_on_an_unknown_account_is_not_found(self, database) -> None:
        officer = await staff(database)
        async with database.transaction() as session:
            with pytest.raises(Rejected) as rejected:
                await erasure.set_legal_hold(session, officer, uuid.uuid4(), "Court order 7")
        assert rejected.value.errors[0].code.value == "NOT_FOUND"

    async def test_a_hold_released_already_cannot_be_released_again(self, client, database) -> None:
        await signed_up(client)
        officer = await staff(database)
        async with database.transaction() as session:
            hold = await erasure.set_legal_hold(
                session, officer, await account_id_of(database), "Court order 7"
            )
            await erasure.release_legal_hold(session, officer, hold.id)
            with pytest.raises(Rejected) as rejected:
                await erasure.release_legal_hold(session, officer, hold.id)
        assert rejected.value.errors[0].code.value == "NOT_FOUND"

    async def test_the_account_stays_while_any_of_several_holds_is_in_force(
        self, client, database
    ) -> None:
        account_id = await deleting(client, database, "held@example.com")
        officer = await staff(database)
        async with database.transaction() as session:
            court = await erasure.set_legal_hold(session, officer, account_id, "Court order 7")
            await erasure.set_legal_hold(session, officer, account_id, "Tax audit 2026")
            await erasure.release_legal_hold(session, officer, court.id)

        assert await purge(database) == PurgeReport(purged=0, held=1, failed=0)
        assert await account_exists(database, account_id)


async def test_the_purge_command_prints_a_report_without_personal_data(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'privacy.db'}"
    assert (await run_cli(url, tmp_path, "migrate"))[0] == 0
    app = create_app(make_config(url))
    database = Database(url)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            gone = await deleting(client, database, "gone@example.com")
            held = await deleting(client, database, "held@example.com")
        officer = await staff(database)
        async with database.transaction() as session:
            await erasure.set_legal_hold(session, officer, held, "Court order 7")
        assert gone != held
    finally:
        await app.state.services.database.dispose()
        await database.dispose()

    first = await run_cli(url, tmp_path, "purge")
    second = await run_cli(url, tmp_path, "purge")

    assert first[0] == 0, first[2]
    assert "1 purged, 1 held back by a legal hold" in first[1]
    assert second[0] == 0, second[2]
    assert "0 purged, 1 held back by a legal hold" in second[1]
    for _, out, err in (first, second):
        assert "@example.com" not in out + err and "Someone Else" not in out + err


async def test_the_erased_ledger_verifies_through_the_cli(
    client, database, database_url, tmp_path
) -> None:
    """`verify-ledger`, as an operator runs it, finds an erased account's chain intact."""
    account_id = await deleting(client, database, "gone@example.com")
    await signed_up(client)
    assert (await purge(database)).purged == 1
    async with database.transaction() as session:
        total = await session.scalar(select(func.count()).select_from(ConsentEvent))
    assert await ledger_of(database, account_id) == []

    code, out, err = await run_cli(database_url, tmp_path, "verify-ledger")

    assert code == 0, err
    assert f"Checked {total} consent events" in out


class TestPruneExpired:
    async def test_deletes_only_what_has_served_its_purpose(self, client, database) -> None:
        token = await signed_up(client)
        toggle = """mutation { setCommunicationPreference(input: {channel: EMAIL,
            topic: NEWSLETTER, enabled: true, idempotencyKey: "retry-1"}) { errors { code } } }"""
        await gql(client, toggle, token=token)
        now = utcnow()
        async with database.transaction() as session:
            account = (await session.scalars(select(Account))).one()
            old = now - timedelta(days=40)
            session.add_all(
                [
                    AuthSession(
                        account_id=account.id,
                        token_hash="a" * 64,
                        created_at=old,
                        last_used_at=old,
                        expires_at=now - timedelta(days=1),
                    ),
                    DataExport(account_id=account.id, token_hash="b" * 64, expires_at=old),
                    DataExport(
                        account_id=account.id,
                        token_hash="c" * 64,
                        expires_at=now + timedelta(hours=1),
                    ),
                ]
            )
            notice = {"version": "v", "summary": "s"}
            sent = queue(session, account, NotificationKind.POLICY_UPDATE, notice)
            queue(session, account, NotificationKind.POLICY_UPDATE, notice)
            await session.flush()
            sent.sent_at, sent.status = old, DeliveryStatus.SENT
            await session.execute(update(IdempotencyKey).values(created_at=now - timedelta(days=2)))

            pruned = await prune_expired(session, now)

            assert (
                pruned.sessions,
                pruned.exports,
                pruned.idempotency_keys,
                pruned.notifications,
            ) == (
                1,
                1,
                1,
                1,
            )
            left = {
                model.__name__: await session.scalar(select(func.count()).select_from(model))
                for model in (AuthSession, DataExport, IdempotencyKey, Notification)
            }
        assert left == {"AuthSession": 1, "DataExport": 1, "IdempotencyKey": 0, "Notification": 1}
        assert (await gql(client, "{ me { id } }", token=token))["data"]["me"] is not None


PUBLIC_PROFILE = "query Profile($id: ID!) { publicProfile(id: $id) { displayName email } }"
ME_PROCESSING = """
{ me {
  processingSuspended
  communicationPreferences { channel topic enabled suspended }
  dataSharing { purpose enabled suspended }
  cookieConsent { functional analytics advertising suspended }
} }
"""


async def profile_seen(client: httpx.AsyncClient, account_id: str, token: str) -> Any:
    body = await gql(client, PUBLIC_PROFILE, {"id": account_id}, token=token)
    assert "errors" not in body, body
    return body["data"]["publicProfile"]


def consent_as_reported(me: dict[str, Any]) -> dict[str, Any]:
    """What `me` reports about the settings a mailer or partner would act on."""
    [newsletter] = [
        p
        for p in me["communicationPreferences"]
        if (p["channel"], p["topic"]) == ("EMAIL", "NEWSLETTER")
    ]
    [alerts] = [
        p
        for p in me["communicationPreferences"]
        if (p["channel"], p["topic"]) == ("EMAIL", "SECURITY_ALERTS")
    ]
    [research] = [s for s in me["dataSharing"] if s["purpose"] == "RESEARCH"]
    return {
        "suspended": me["processingSuspended"],
        "newsletter": (newsletter["enabled"], newsletter["suspended"]),
        "security alerts": (alerts["enabled"], alerts["suspended"]),
        "research": (research["enabled"], research["suspended"]),
        "analytics cookies": (me["cookieConsent"]["analytics"], me["cookieConsent"]["suspended"]),
    }


class TestWhileDeletionIsPending:
    """From the request on, the person is no longer shown to others nor processed on consent;
    cancelling puts everything back as it was."""

    async def test_the_profile_is_hidden_from_others_at_once_and_cancel_restores_it(
        self, client
    ) -> None:
        token = await signed_up(client, **ADA)
        ada_id = (await gql(client, ME_DELETION, token=token))["data"]["me"]["id"]
        await changed(client, "updateVisibility", {"profile": "PUBLIC"}, token=token)
        bob = await signed_up(client, email="bob@example.com", displayName="Bob Builder")
        assert (await profile_seen(client, ada_id, bob))["displayName"] == "Ada Lovelace"

        assert (await request_deletion(client, token))["errors"] == []

        assert await profile_seen(client, ada_id, bob) is None
        token = await login(client)
        assert (await profile_seen(client, ada_id, token))["displayName"] == "Ada Lovelace"
        assert (await cancel_deletion(client, token))["errors"] == []
        assert (await profile_seen(client, ada_id, bob))["displayName"] == "Ada Lovelace"

    async def test_consent_based_settings_read_as_suspended_and_cancel_restores_them(
        self, client, database
    ) -> None:
        token = await signed_up(client, **ADA)
        email_newsletter = {"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": True}
        await changed(client, "setCommunicationPreference", email_newsletter, token=token)
        await changed(
            client, "setDataSharing", {"purpose": "RESEARCH", "enabled": True}, token=token
        )
        await changed(client, "setCookieConsent", {"analytics": True}, token=token)
        chosen = {
            "suspended": False,
            "newsletter": (True, False),
            "security alerts": (True, False),
            "research": (True, False),
            "analytics cookies": (True, []),
        }
        assert (
            consent_as_reported((await gql(client, ME_PROCESSING, token=token))["data"]["me"])
            == chosen
        )

        assert (await request_deletion(client, token))["errors"] == []

        token = await login(client)
        me = (await gql(client, ME_PROCESSING, token=token))["data"]["me"]
        assert consent_as_reported(me) == {
            "suspended": True,
            "newsletter": (False, True),
            "security alerts": (True, False),  # not a matter of consent: still sent
            "research": (False, True),
            "analytics cookies": (False, ["ANALYTICS"]),
        }
        # A mailer asking for a newsletter's unsubscribe link learns not to send it.
        async with database.transaction() as session:
            with pytest.raises(Rejected) as refused:
                await unsubscribe.unsubscribe_link(
                    session,
                    secret_key=TEST_SECRET,
                    unsubscribe_link=lambda token: f"https://example.com/u/{token}",
                    email="ada@example.com",
                    topic=Topic.NEWSLETTER,
                )
        assert refused.value.errors[0].code.value == "PROCESSING_SUSPENDED"

        assert (await cancel_deletion(client, token))["errors"] == []
        me = (await gql(client, ME_PROCESSING, token=token))["data"]["me"]
        assert consent_as_reported(me) == chosen


async def outbox(database: Database) -> list[Notification]:
    async with database.transaction() as session:
        return list(await session.scalars(select(Notification).order_by(Notification.created_at)))


async def mark_sent(database: Database, messages: list[Notification]) -> int:
    async with database.transaction() as session:
        return await notifications.mark_sent(session, [message.id for message in messages])


async def decided_by_staff(database: Database, officer: Actor, account_id: uuid.UUID) -> None:
    """A deletion with no grace period, as after a report of a child's account."""
    async with database.transaction() as session:
        await erasure.schedule_deletion(
            session, account_id, due_at=utcnow(), requested_by=officer.account_id
        )


class TestTheLastMessages:
    async def test_a_zero_grace_deletion_waits_for_its_notice_then_leaves_one_erased_message(
        self, client, database
    ) -> None:
        await signed_up(client, **ADA)
        officer = await staff(database)
        account_id = await account_id_of(database)
        await decided_by_staff(database, officer, account_id)

        waiting = await purge(database)

        assert waiting == PurgeReport(purged=0, held=0, failed=0, waiting=1)
        assert await account_exists(database, account_id)
        (notice,) = await outbox(database)
        assert notice.kind is NotificationKind.DELETION_SCHEDULED and notice.sent_at is None
        assert await mark_sent(database, [notice]) == 1

        assert await purge(database) == PurgeReport(purged=1, held=0, failed=0)

        assert not await account_exists(database, account_id)
        (erased,) = await outbox(database)
        assert erased.kind is NotificationKind.ACCOUNT_ERASED
        assert erased.recipient == "ada@example.com"
        assert erased.account_id is None and erased.sent_at is None
        assert "erased" in erased.subject.lower()
        text = f"{erased.subject} {erased.body}"
        assert str(account_id) not in text and account_id.hex not in text
        assert "Ada" not in text
        # Once a mailer has sent it, the address is forgotten too.
        assert await mark_sent(database, [erased]) == 1
        assert await outbox(database) == []
        stored = await table_dump(database)
        for trace in ADA_TRACES:
            assert trace not in stored

    async def test_an_unsent_notice_holds_the_purge_only_for_the_maximum_wait(
        self, client, database
    ) -> None:
        await signed_up(client, **ADA)
        officer = await staff(database)
        account_id = await account_id_of(database)
        await decided_by_staff(database, officer, account_id)
        almost = utcnow() + erasure.NOTICE_MAX_WAIT - timedelta(minutes=5)
        assert await purge(database, almost) == PurgeReport(purged=0, held=0, failed=0, waiting=1)

        later = utcnow() + erasure.NOTICE_MAX_WAIT + timedelta(minutes=1)
        assert await purge(database, later) == PurgeReport(purged=1, held=0, failed=0)

        assert not await account_exists(database, account_id)
        (erased,) = await outbox(database)
        assert erased.kind is NotificationKind.ACCOUNT_ERASED
        assert (erased.recipient, erased.account_id) == ("ada@example.com", None)


class TestStaffTextOnPurge:
    async def test_free_text_about_the_person_is_replaced_and_the_structure_kept(
        self, client, database
    ) -> None:
        token = await signed_up(client, **ADA)
        officer = await staff(database)
        account_id = await account_id_of(database)
        texts = (
            "Ada says her ex-husband reads her messages",
            "Checked Ada's sign-ins for the harassment claim",
            "Litigation hold: Ada v. Neighbour, case 99",
            "Read Ada's profile for ticket 4711",
        )
        async with database.transaction() as session:
            complaint = open_request(
                session,
                kind=RequestKind.COMPLAINT,
                account_id=account_id,
                requested_by=account_id,
            )
            await session.flush()
            await staff_use_cases.process_request(
                session,
                officer,
                privacy_request_id=complaint.id,
                status=RequestStatus.COMPLETED,
                resolution=texts[0],
                reason=texts[1],
                request_id=None,
            )
            hold = await erasure.set_legal_hold(session, officer, account_id, texts[2])
            await staff_use_cases.look_up_account(
                session,
                officer,
                account_id=account_id,
                email=None,
                reason=texts[3],
                request_id=None,
            )
        async with database.transaction() as session:
            await erasure.release_legal_hold(session, officer, hold.id)
        assert (await request_deletion(client, token))["errors"] == []
        await notices_sent(database)
        await make_due(database, account_id, timedelta(minutes=1))

        assert await purge(database) == PurgeReport(purged=1, held=0, failed=0)

        stored = await table_dump(database)
        for text in texts:
            assert text not in stored
        alias = erasure.pseudonym(TEST_SECRET, account_id)
        async with database.transaction() as session:
            kept = await session.get(PrivacyRequest, complaint.id)
            assert kept is not None
            assert (kept.kind, kept.status, kept.account_id) == (
                RequestKind.COMPLAINT,
                RequestStatus.COMPLETED,
                alias,
            )
            assert kept.handled_by == officer.account_id and kept.handled_at is not None
            assert kept.resolution == erasure.ERASED_TEXT
            entries = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
            assert [(e.action, e.staff_id, e.account_id) for e in entries] == [
                ("request.process", officer.account_id, alias),
                ("account.read", officer.account_id, alias),
            ]
            assert {e.reason for e in entries} == {erasure.ERASED_TEXT}
            (kept_hold,) = await session.scalars(select(LegalHold))
            assert (kept_hold.account_id, kept_hold.set_by) == (alias, officer.account_id)
            assert kept_hold.reason == erasure.ERASED_TEXT and kept_hold.released_at


DELETION_QUEUE = """
query Queue($reason: String!) {
  privacyRequests(reason: $reason, kind: DELETION, status: OPEN) { id status }
}
"""
PROCESS = """
mutation Process($input: ProcessRequestInput!) {
  processPrivacyRequest(input: $input) { request { status resolution } errors { field code } }
}
"""
ME_AFTER_DECISION = """
{ me { deletion { dueAt } processingSuspended messages { kind subject } } }
"""
OFFICER_REASON = "Weekly review of open deletion requests"


async def decide_deletion(
    client: httpx.AsyncClient, officer: str, status: str, resolution: str
) -> dict[str, Any]:
    """A privacy officer closes the one open deletion request from the queue, as `status`."""
    queue = await gql(client, DELETION_QUEUE, {"reason": OFFICER_REASON}, token=officer)
    [request] = queue["data"]["privacyRequests"]
    variables = {
        "input": {
            "id": request["id"],
            "status": status,
            "resolution": resolution,
            "reason": OFFICER_REASON,
        }
    }
    body = await gql(client, PROCESS, variables, token=officer)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["processPrivacyRequest"]
    return payload


class TestOfficerDecidesADeletionRequest:
    """processPrivacyRequest on a deletion request: rejecting keeps the account; only the purge
    completes one, by erasing it."""

    async def test_rejecting_keeps_the_account_lifts_the_suspension_and_tells_the_person(
        self, client, database
    ) -> None:
        assert (await request_deletion(client, await signed_up(client, **ADA)))["errors"] == []
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "olga@example.com")
        answer = "We must keep the account while your contract runs."

        payload = await decide_deletion(client, officer, "REJECTED", answer)

        assert payload["errors"] == []
        assert payload["request"]["status"] == "REJECTED"
        token = await login(client)
        me = (await gql(client, ME_AFTER_DECISION, token=token))["data"]["me"]
        assert me["deletion"] is None and me["processingSuspended"] is False
        told = [m["subject"] for m in me["messages"] if m["kind"] == "REQUEST_ANSWERED"]
        assert told and "rejected" in told[0]
        await notices_sent(database)
        report = await purge(database, now=utcnow() + timedelta(days=365))
        assert report == PurgeReport(purged=0, held=0, failed=0)
        assert (await gql(client, ME_DELETION, token=token))["data"]["me"]["id"]
        (request,) = await deletion_requests(database, await account_id_of(database))
        assert (request.status, request.resolution) == (RequestStatus.REJECTED, answer)

    async def test_completing_is_refused_and_changes_nothing(self, client, database) -> None:
        assert (await request_deletion(client, await signed_up(client, **ADA)))["errors"] == []
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "olga@example.com")

        payload = await decide_deletion(client, officer, "COMPLETED", "Done.")

        assert payload["request"] is None
        assert payload["errors"] == [{"field": "status", "code": "INVALID_INPUT"}]
        token = await login(client)
        assert (await gql(client, ME_AFTER_DECISION, token=token))["data"]["me"]["deletion"]
        (request,) = await deletion_requests(database, await account_id_of(database))
        assert request.status is RequestStatus.OPEN


MY_DELETION_REQUEST = """
{ me { deletion { requestedAt dueAt } privacyRequests { kind createdAt dueAt } } }
"""


class TestDeletionDate:
    """The erasure comes after the grace period, and never later than the deletion request
    must be answered: one calendar month from receipt."""

    @given(
        requested=st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ),
        grace_days=st.integers(min_value=0, max_value=erasure.MAX_GRACE_DAYS),
    )
    @example(requested=datetime(2027, 1, 31, 23, 59, tzinfo=UTC), grace_days=30)
    @example(requested=datetime(2028, 1, 30, 12, 0, tzinfo=UTC), grace_days=31)
    @example(requested=datetime(2027, 2, 28, 8, 0, tzinfo=UTC), grace_days=30)
    @example(requested=datetime(2027, 4, 30, 8, 0, tzinfo=UTC), grace_days=31)
    def test_never_later_than_one_calendar_month(
        self, requested: datetime, grace_days: int
    ) -> None:
        due = erasure.deletion_date(requested, grace_days)

        month_later = add_months(requested, 1)
        assert requested <= due <= month_later
        assert due == min(requested + timedelta(days=grace_days), month_later)

    def test_a_request_of_29_january_is_erased_on_28_february_not_in_march(self) -> None:
        requested = datetime(2027, 1, 29, 10, 0, tzinfo=UTC)

        assert erasure.deletion_date(requested, 30) == datetime(2027, 2, 28, 10, 0, tzinfo=UTC)
        assert erasure.deletion_date(requested, 7) == datetime(2027, 2, 5, 10, 0, tzinfo=UTC)

    async def test_the_date_shown_is_within_a_month_and_is_the_requests_due_date(
        self, clean_database_url
    ) -> None:
        config = make_config(clean_database_url, deletion_grace_days=erasure.MAX_GRACE_DAYS)
        async with client_of(config) as client:
            assert (await request_deletion(client, await signed_up(client)))["errors"] == []
            me = (await gql(client, MY_DELETION_REQUEST, token=await login(client)))["data"]["me"]

        requested = datetime.fromisoformat(me["deletion"]["requestedAt"])
        due = datetime.fromisoformat(me["deletion"]["dueAt"])
        assert requested < due <= add_months(requested, 1)
        [request] = me["privacyRequests"]
        assert (request["kind"], request["dueAt"]) == ("DELETION", me["deletion"]["dueAt"])

    @pytest.mark.parametrize("days", ["32", "45", "365"])
    async def test_a_longer_grace_period_is_refused_at_start(self, tmp_path: Path, days) -> None:
        result = await run_cli(
            f"sqlite+aiosqlite:///{tmp_path}/privacy.db",
            tmp_path,
            "migrate",
            PRIVACY_API_DELETION_GRACE_DAYS=days,
        )

        assert result.code == 2
        assert "PRIVACY_API_DELETION_GRACE_DAYS must be 0 to 31" in result.err
        assert "calendar month" in result.err and "Traceback" not in result.err
        assert not (tmp_path / "privacy.db").exists()

    async def test_the_longest_grace_period_is_accepted(self, tmp_path: Path) -> None:
        result = await run_cli(
            f"sqlite+aiosqlite:///{tmp_path}/privacy.db",
            tmp_path,
            "migrate",
            PRIVACY_API_DELETION_GRACE_DAYS="31",
        )

        assert result.code == 0, result.err


SET_HOLD = """
mutation Hold($input: SetLegalHoldInput!) {
  setLegalHold(input: $input) { hold { id } errors { field code } }
}
"""
MY_MESSAGES = "{ me { id messages { kind subject } } }"
MATTER = "Court order 2026/114: preserve records"


async def hold(client: httpx.AsyncClient, officer: str, account_id: str) -> None:
    variables = {"input": {"accountId": account_id, "reason": MATTER}}
    body = await gql(client, SET_HOLD, variables, token=officer)
    assert body["data"]["setLegalHold"]["errors"] == [], body


async def held_notices(client: httpx.AsyncClient, token: str) -> list[str]:
    me = (await gql(client, MY_MESSAGES, token=token))["data"]["me"]
    return [m["subject"] for m in me["messages"] if m["kind"] == "DELETION_HELD"]


class TestAHeldDeletionIsTold:
    """A legal hold that keeps an account whose deletion is pending is told to the person, with
    the reason, once: not discovered when the date passes and nothing happens."""

    async def test_a_hold_set_on_a_pending_deletion_mails_the_person_once(
        self, client, database
    ) -> None:
        token = await signed_up(client, **ADA)
        account_id = (await gql(client, ME_DELETION, token=token))["data"]["me"]["id"]
        assert (await request_deletion(client, token))["errors"] == []
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "olga@example.com")

        await hold(client, officer, account_id)
        await hold(client, officer, account_id)  # a second matter: nothing new to tell

        token = await login(client)
        assert await held_notices(client, token) == ["Your account cannot be deleted yet"]
        async with database.session() as session:
            [body] = await session.scalars(
                select(Notification.body).where(Notification.kind == NotificationKind.DELETION_HELD)
            )
        assert "You asked us on " in body and "legal hold" in body
        assert MATTER not in body  # the matter itself is staff's to disclose, not a template's
        await make_due(database, uuid.UUID(account_id), timedelta(minutes=1))
        await notices_sent(database)
        assert await purge(database) == PurgeReport(purged=0, held=1, failed=0)

    async def test_asking_for_deletion_while_held_says_so_at_once(self, client, database) -> None:
        token = await signed_up(client, **ADA)
        account_id = (await gql(client, ME_DELETION, token=token))["data"]["me"]["id"]
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "olga@example.com")
        await hold(client, officer, account_id)
        assert await held_notices(client, token) == []  # no deletion asked for: nothing to tell

        assert (await request_deletion(client, token))["errors"] == []

        assert await held_notices(client, await login(client)) == [
            "Your account cannot be deleted yet"
        ]


REPORT_CHILD = """
mutation Report($input: ChildReportInput!) {
  reportChildAccount(input: $input) { errors { field code } }
}
"""
SEARCH = """
query Search($text: String!, $reason: String!) {
  staffAccounts(emailContains: $text, reason: $reason, first: 5) { id }
}
"""
CHANGE_EMAIL = """
mutation Change($input: EmailChangeInput!) { requestEmailChange(input: $input) { errors { code } } }
"""
CONFIRM_EMAIL = """
mutation Confirm($token: String!) { confirmEmailChange(input: {token: $token}) { errors { code } } }
"""
PUBLISH_POLICY = """
mutation {
  publishPolicyVersion(input: {version: "2026-06", summary: "Shorter logs.", material: true}) {
    errors { code }
  }
}
"""
ADA_NOW = "ada.new@example.com"
COMPLAIN = """
mutation Complain($input: PrivacyRequestInput!) { fileComplaint(input: $input) { errors { code } } }
"""


def mail_to(folder: Path) -> dict[str, list[str]]:
    """The subjects of the .eml files in the development mail folder, by recipient."""
    found: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=email_policy.default)
        found.setdefault(str(message["To"]), []).append(str(message["Subject"]))
    return found


class TestErasedByEveryAddress:
    """The purge erases by every address the account ever had: free text that names one, a
    contact address given before an email change, and the development mail written to them."""

    async def test_old_and_new_addresses_leave_no_trace(
        self, client, database, clean_database_url, tmp_path: Path
    ) -> None:
        ada = await signed_up(client, **ADA)
        bob = await signed_up(client, email="bob@example.com", displayName="Bob Builder")
        bob_id = (await gql(client, ME_DELETION, token=bob))["data"]["me"]["id"]
        client.cookies.clear()
        # Signed out, with the address she has now, Ada reports a profile.
        report = {"accountId": bob_id, "details": "Looks twelve", "contactEmail": ADA["email"]}
        assert (await gql(client, REPORT_CHILD, {"input": report}))["data"]["reportChildAccount"][
            "errors"
        ] == []
        # Support looks for the address she will move to, and finds nobody yet.
        support = await staff_token(client, database, Role.SUPPORT, "sam@example.com")
        note = f"Ada Lovelace phoned: her mail now goes to {ADA_NOW.upper()}"
        found = await gql(client, SEARCH, {"text": "ada.new", "reason": note}, token=support)
        assert found["data"]["staffAccounts"] == []
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "olga@example.com")
        published = await gql(client, PUBLISH_POLICY, token=officer)
        assert published["data"]["publishPolicyVersion"]["errors"] == []
        move = {"input": {"newEmail": ADA_NOW, "currentPassword": PASSWORD}}
        assert (await gql(client, CHANGE_EMAIL, move, token=ada))["data"]["requestEmailChange"][
            "errors"
        ] == []
        async with database.session() as session:
            code = await session.scalar(
                select(Notification.secret).where(
                    Notification.kind == NotificationKind.EMAIL_CONFIRMATION
                )
            )
        assert code is not None
        confirmed = await gql(client, CONFIRM_EMAIL, {"token": code})
        assert confirmed["data"]["confirmEmailChange"]["errors"] == []
        assert (await request_deletion(client, ada))["errors"] == []
        deliver = await run_cli(clean_database_url, tmp_path, "deliver", "--once")
        assert deliver.code == 0, deliver.err
        folder = tmp_path / "mail"
        assert {ADA["email"], ADA_NOW, "bob@example.com"} <= set(mail_to(folder))
        await make_due(database, await account_id_of(database, ADA_NOW), timedelta(minutes=1))

        purged = await run_cli(clean_database_url, tmp_path, "purge")

        assert purged.code == 0, purged.err
        assert "1 purged" in purged.out
        # The last message goes to the address she has now, and is then forgotten too.
        assert (await run_cli(clean_database_url, tmp_path, "deliver", "--once")).code == 0
        stored = await table_dump(database)
        for trace in (ADA["email"], ADA_NOW, ADA_NOW.upper(), "Ada Lovelace"):
            assert trace not in stored
        assert "Bob Builder" in stored
        left = mail_to(folder)
        assert ADA["email"] not in left
        assert left[ADA_NOW] == ["Your account has been erased"]
        assert left["bob@example.com"] == ["We have updated our privacy policy (2026-06)"]
        async with database.session() as session:
            entries = list(await session.scalars(select(AuditEntry.action)))
            [reported] = await session.scalars(
                select(PrivacyRequest).where(PrivacyRequest.kind == RequestKind.CHILD_REPORT)
            )
        assert "account.search" in entries  # the record of the search stays, without its text
        assert reported.contact_email is None and str(reported.account_id) == bob_id

    async def test_a_former_address_someone_else_has_now_is_theirs(self, client, database) -> None:
        ada = await signed_up(client, **ADA)
        move = {"input": {"newEmail": ADA_NOW, "currentPassword": PASSWORD}}
        assert (await gql(client, CHANGE_EMAIL, move, token=ada))["data"]["requestEmailChange"][
            "errors"
        ] == []
        async with database.session() as session:
            code = await session.scalar(
                select(Notification.secret).where(
                    Notification.kind == NotificationKind.EMAIL_CONFIRMATION
                )
            )
        assert (await gql(client, CONFIRM_EMAIL, {"token": code}))["data"]["confirmEmailChange"][
            "errors"
        ] == []
        # Carol takes the address Ada left, and writes it in a complaint of her own.
        carol = await signed_up(client, email=ADA["email"], displayName="Carol Clark")
        complaint = {"subject": "Spam", "details": f"Mail to {ADA['email']} keeps coming"}
        filed = await gql(client, COMPLAIN, {"input": complaint}, token=carol)
        assert filed["data"]["fileComplaint"]["errors"] == []
        assert (await request_deletion(client, ada))["errors"] == []
        await notices_sent(database)
        await make_due(database, await account_id_of(database, ADA_NOW), timedelta(minutes=1))

        assert await purge(database) == PurgeReport(purged=1, held=0, failed=0)

        mine = await gql(client, "{ me { email privacyRequests { details } } }", token=carol)
        assert mine["data"]["me"] == {
            "email": ADA["email"],
            "privacyRequests": [{"details": complaint["details"]}],
        }
