"""The sender API: machine clients with scoped API keys ask whether they may contact people
(consentStatus) and sync marketing opt-outs (suppressedAccounts)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select, update

from models import Account, ApiKey, AuditEntry, Database, Role
from privacy_api.config import Config
from tests import test_parental_consent as parental
from tests.conftest import client_of, make_config
from tests.helpers import (
    birth_date_for_age,
    changed,
    count_statements,
    database_behind,
    gql,
    new_account,
    signup,
    staff_token,
)
from tests.test_deletion import request_deletion
from tests.test_requests import REPORT
from web.app import create_app

REASON = "Ticket 12: the mailer syncs consent before each send"
MARKETING = "communication.email.marketing"
NEWSLETTER = "communication.email.newsletter"
SECURITY = "communication.email.security_alerts"
RESEARCH = "data_sharing.research"
ADVERTISING = "cookies.advertising"

CREATE = """
mutation Create($input: CreateApiKeyInput!) {
  createApiKey(input: $input) {
    key
    apiKey { id name prefix scopes createdAt revokedAt useCount lastUsedAt }
    errors { field code message }
  }
}
"""
REVOKE = """
mutation Revoke($input: RevokeApiKeyInput!) {
  revokeApiKey(input: $input) { apiKey { id revokedAt } errors { field code message } }
}
"""
KEYS = """
query Keys($includeRevoked: Boolean! = false) {
  apiKeys(includeRevoked: $includeRevoked) {
    id name prefix scopes revokedAt useCount lastUsedAt
  }
}
"""
STATUS = """
query Status($ids: [ID!]!, $keys: [String!]!) {
  consentStatus(accountIds: $ids, keys: $keys) {
    accountId known decisions { key allowed blockedBy }
  }
}
"""
FEED = """
query Feed($since: DateTime, $first: Int! = 100, $after: String) {
  suppressedAccounts(since: $since, first: $first, after: $after) {
    edges { cursor node { accountId key channel topic source occurredAt } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def config_for(database_url: str, **overrides: object) -> Config:
    return make_config(database_url, **overrides)


@pytest.fixture
async def api(clean_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app, with opt-outs listed in the feed at once (a minute later by default)."""
    async with client_of(config_for(clean_database_url, suppression_feed_delay_seconds=0)) as http:
        yield http


@pytest.fixture
async def officer(api: httpx.AsyncClient, database: Database) -> str:
    return await staff_token(api, database, Role.PRIVACY_OFFICER, "officer@example.com")


async def create_key(
    client: httpx.AsyncClient, officer: str, *scopes: str, name: str = "mailer"
) -> dict[str, Any]:
    """Create a key that must succeed: the payload, with the key itself and its listing."""
    body = await gql(
        client,
        CREATE,
        {"input": {"name": name, "scopes": list(scopes), "reason": REASON}},
        token=officer,
    )
    payload: dict[str, Any] = body["data"]["createApiKey"]
    assert payload["errors"] == [], payload
    return payload


async def a_key(client: httpx.AsyncClient, officer: str, *scopes: str) -> str:
    key: str = (await create_key(client, officer, *scopes))["key"]
    return key


async def listed(client: httpx.AsyncClient, officer: str, **variables: Any) -> list[dict[str, Any]]:
    body = await gql(client, KEYS, variables, token=officer)
    assert "errors" not in body, body
    keys: list[dict[str, Any]] = body["data"]["apiKeys"]
    return keys


async def status(
    client: httpx.AsyncClient, key: str, ids: list[str], keys: list[str]
) -> dict[str, dict[str, Any]]:
    """consentStatus that must answer: for each account asked, `known` and key -> blockedBy
    (None when allowed)."""
    body = await gql(client, STATUS, {"ids": ids, "keys": keys}, token=key)
    assert "errors" not in body, body
    answers = body["data"]["consentStatus"]
    assert [a["accountId"] for a in answers] == ids
    found = {}
    for answer in answers:
        decisions = answer["decisions"]
        assert [d["key"] for d in decisions] == list(dict.fromkeys(keys))
        assert all(d["allowed"] == (d["blockedBy"] is None) for d in decisions)
        found[answer["accountId"]] = {
            "known": answer["known"],
            **{d["key"]: d["blockedBy"] for d in decisions},
        }
    return found


async def person(
    client: httpx.AsyncClient, email: str, headers: dict[str, str] | None = None, **details: Any
) -> tuple[str, str]:
    """Sign someone up: their id and bearer token. Through the API when `headers` say something
    of the signup (its Global Privacy Control signal)."""
    if headers is None:
        return await new_account(client, email=email, **details)
    payload = await signup(client, headers, email=email, **details)
    assert payload["errors"] == [], payload["errors"]
    client.cookies.clear()
    return payload["account"]["id"], payload["token"]


async def switch(
    client: httpx.AsyncClient, token: str, topic: str, enabled: bool, channel: str = "EMAIL"
) -> None:
    await changed(
        client,
        "setCommunicationPreference",
        {"channel": channel, "topic": topic, "enabled": enabled},
        token=token,
    )


async def stored_key(database: Database) -> ApiKey:
    async with database.session() as session:
        [key] = list(await session.scalars(select(ApiKey)))
        return key


async def audit_actions(database: Database) -> list[tuple[str, str]]:
    async with database.session() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.reason).order_by(AuditEntry.id)
        )
        return [(action, reason) for action, reason in rows]


def error_code(body: dict[str, Any]) -> str:
    code: str = body["errors"][0]["extensions"]["code"]
    return code


class TestApiKeys:
    async def test_only_privacy_officers_manage_keys(self, api, database) -> None:
        variables = {"input": {"name": "mailer", "scopes": ["CONSENT_READ"], "reason": REASON}}
        assert error_code(await gql(api, CREATE, variables)) == "UNAUTHENTICATED"
        support = await staff_token(api, database, Role.SUPPORT, "support@example.com")
        assert error_code(await gql(api, CREATE, variables, token=support)) == "FORBIDDEN"
        assert error_code(await gql(api, KEYS, token=support)) == "FORBIDDEN"
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(ApiKey)) == 0

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"name": "  "}, "name"),
            ({"name": "x" * 101}, "name"),
            ({"scopes": []}, "scopes"),
            ({"reason": "why"}, "reason"),
        ],
    )
    async def test_bad_input_is_refused_and_nothing_is_stored(
        self, api, officer, database, change, field
    ) -> None:
        values = {"name": "mailer", "scopes": ["CONSENT_READ"], "reason": REASON, **change}
        body = await gql(api, CREATE, {"input": values}, token=officer)
        payload = body["data"]["createApiKey"]
        assert payload["key"] is None and payload["apiKey"] is None
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [(field, "INVALID_INPUT")]
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(ApiKey)) == 0
        assert await audit_actions(database) == []

    async def test_the_key_is_shown_once_and_kept_only_as_a_hash(
        self, api, officer, database
    ) -> None:
        payload = await create_key(api, officer, "CONSENT_READ", "SUPPRESSIONS_READ")
        key = payload["key"]
        assert key.startswith("pk_") and len(key) == 46
        shown = payload["apiKey"]
        assert shown["prefix"] == key[:11]
        assert shown["scopes"] == ["CONSENT_READ", "SUPPRESSIONS_READ"]
        assert (shown["useCount"], shown["lastUsedAt"], shown["revokedAt"]) == (0, None, None)

        [again] = await listed(api, officer)
        assert again["id"] == shown["id"] and key not in str(again)

        stored = await stored_key(database)
        assert stored.token_hash == hashlib.sha256(key.encode()).hexdigest()
        row = {column: getattr(stored, column) for column in ApiKey.__table__.columns.keys()}
        assert not any(key in str(value) for value in row.values()), row
        [(action, reason)] = await audit_actions(database)
        assert action == "api_key.create"
        assert reason.startswith(REASON) and str(stored.id) in reason and key not in reason

    async def test_a_revoked_key_is_refused(self, api, officer, database) -> None:
        payload = await create_key(api, officer, "CONSENT_READ")
        key, key_id = payload["key"], payload["apiKey"]["id"]
        assert "errors" not in await gql(
            api, STATUS, {"ids": [str(uuid.uuid4())], "keys": [MARKETING]}, token=key
        )

        body = await gql(api, REVOKE, {"input": {"id": key_id, "reason": REASON}}, token=officer)
        assert body["data"]["revokeApiKey"]["errors"] == []
        assert body["data"]["revokeApiKey"]["apiKey"]["revokedAt"] is not None

        refused = await gql(
            api, STATUS, {"ids": [str(uuid.uuid4())], "keys": [MARKETING]}, token=key
        )
        assert error_code(refused) == "UNAUTHENTICATED" and refused["data"] is None
        again = await gql(api, REVOKE, {"input": {"id": key_id, "reason": REASON}}, token=officer)
        assert [e["code"] for e in again["data"]["revokeApiKey"]["errors"]] == ["INVALID_INPUT"]
        unknown = {"input": {"id": str(uuid.uuid4()), "reason": REASON}}
        body = await gql(api, REVOKE, unknown, token=officer)
        assert [e["code"] for e in body["data"]["revokeApiKey"]["errors"]] == ["NOT_FOUND"]

        assert await listed(api, officer) == []
        [revoked] = await listed(api, officer, includeRevoked=True)
        assert revoked["id"] == key_id and revoked["revokedAt"] is not None
        assert [action for action, _ in await audit_actions(database)] == [
            "api_key.create",
            "api_key.revoke",
        ]

    async def test_a_key_reaches_only_what_its_scopes_allow(self, api, officer) -> None:
        consent_only = await a_key(api, officer, "CONSENT_READ")
        feed_only = await a_key(api, officer, "SUPPRESSIONS_READ")
        ids = {"ids": [str(uuid.uuid4())], "keys": [MARKETING]}

        assert "errors" not in await gql(api, STATUS, ids, token=consent_only)
        body = await gql(api, FEED, token=consent_only)
        assert (
            error_code(body) == "FORBIDDEN" and "suppressions:read" in body["errors"][0]["message"]
        )
        assert "errors" not in await gql(api, FEED, token=feed_only)
        body = await gql(api, STATUS, ids, token=feed_only)
        assert error_code(body) == "FORBIDDEN" and "consent:read" in body["errors"][0]["message"]

    async def test_a_key_is_not_a_person(self, api, officer) -> None:
        key = await a_key(api, officer, "CONSENT_READ", "SUPPRESSIONS_READ")
        assert await gql(api, "{ me { id } }", token=key) == {"data": {"me": None}}
        assert error_code(await gql(api, KEYS, token=key)) == "UNAUTHENTICATED"
        staff_read = '{ staffAccount(email: "a@example.com", reason: "checking it") { id } }'
        assert error_code(await gql(api, staff_read, token=key)) == "UNAUTHENTICATED"
        # Nor is a person, even a privacy officer, a machine client.
        body = await gql(
            api, STATUS, {"ids": [str(uuid.uuid4())], "keys": [MARKETING]}, token=officer
        )
        assert error_code(body) == "UNAUTHENTICATED" and "API key" in body["errors"][0]["message"]

    async def test_each_use_is_counted(self, api, officer, database) -> None:
        key = await a_key(api, officer, "CONSENT_READ", "SUPPRESSIONS_READ")
        ids = {"ids": [str(uuid.uuid4())], "keys": [MARKETING]}
        for _ in range(2):
            await gql(api, STATUS, ids, token=key)
        await gql(api, FEED, token=key)

        [shown] = await listed(api, officer)
        assert shown["useCount"] == 3 and shown["lastUsedAt"] is not None
        # Counted in the process and written about once a minute: each read stayed a read.
        assert (await stored_key(database)).use_count == 0

    async def test_counts_are_written_in_batches_and_when_the_app_stops(
        self, clean_database_url, database
    ) -> None:
        every_call = create_app(config_for(clean_database_url, api_key_usage_flush_seconds=0))
        async with every_call.router.lifespan_context(every_call):
            transport = httpx.ASGITransport(app=every_call)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "o@example.com")
                key = await a_key(client, officer, "CONSENT_READ")
                ids = {"ids": [str(uuid.uuid4())], "keys": [MARKETING]}
                for _ in range(2):
                    await gql(client, STATUS, ids, token=key)
                # With no wait between writes, each call writes its own use.
                assert (await stored_key(database)).use_count == 2

        app = create_app(config_for(clean_database_url))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for _ in range(3):
                    await gql(client, STATUS, ids, token=key)
            assert (await stored_key(database)).use_count == 2
        stopped = await stored_key(database)
        assert stopped.use_count == 5 and stopped.last_used_at is not None


class TestConsentStatus:
    async def test_a_person_with_a_choice_on_and_one_off(self, api, officer) -> None:
        key = await a_key(api, officer, "CONSENT_READ")
        ada, token = await person(api, "ada@example.com")
        await switch(api, token, "MARKETING", True)
        grace, grace_token = await person(api, "grace@example.com")
        await switch(api, grace_token, "MARKETING", True)
        await switch(api, grace_token, "NEWSLETTER", True)
        await changed(api, "optOutOfMarketing", None, token=grace_token)

        found = await status(api, key, [ada, grace], [MARKETING, NEWSLETTER, SECURITY])
        assert found[ada] == {
            "known": True,
            MARKETING: None,
            NEWSLETTER: "NOT_CHOSEN",
            SECURITY: None,
        }
        assert found[grace] == {
            "known": True,
            MARKETING: "NOT_CHOSEN",
            NEWSLETTER: "NOT_CHOSEN",
            SECURITY: None,
        }

    async def test_unknown_ids_are_answered_as_unknown(self, api, officer) -> None:
        key = await a_key(api, officer, "CONSENT_READ")
        ada, _ = await person(api, "ada@example.com")
        nobody, malformed = str(uuid.uuid4()), "not-an-id"
        found = await status(api, key, [nobody, ada, malformed, ada], [SECURITY])
        assert found[nobody] == found[malformed] == {"known": False, SECURITY: "UNKNOWN_ACCOUNT"}
        assert found[ada] == {"known": True, SECURITY: None}

    async def test_a_minor_may_not_receive_what_is_withheld_from_minors(
        self, api, officer, database
    ) -> None:
        key = await a_key(api, officer, "CONSENT_READ")
        teen, _ = await person(
            api, "teen@example.com", birthDate=birth_date_for_age(14), country="DE"
        )
        # A minor by today's rules still holding a choice on (as a stricter age table leaves it
        # until the age rules are applied): the rule is applied when asked, not only when stored.
        moved, token = await person(
            api, "moved@example.com", birthDate=birth_date_for_age(14), country="GB"
        )
        await switch(api, token, "MARKETING", True)
        async with database.transaction() as session:
            await session.execute(
                update(Account).where(Account.id == uuid.UUID(moved)).values(country="DE")
            )

        found = await status(api, key, [teen, moved], [MARKETING, SECURITY])
        assert found[teen] == {"known": True, MARKETING: "MINOR", SECURITY: None}
        assert found[moved] == {"known": True, MARKETING: "MINOR", SECURITY: None}

    async def test_what_a_parent_granted_a_minor_is_allowed_as_their_settings_allow_it(
        self, api, officer, database
    ) -> None:
        key = await a_key(api, officer, "CONSENT_READ")
        teen, token = await person(
            api, "teen@example.com", birthDate=birth_date_for_age(14), country="DE"
        )
        await parental.asked(api, token, [NEWSLETTER])
        link = await parental.newest_link(database)
        assert (await parental.answer(api, link, {NEWSLETTER: "grant"})).status_code == 200

        found = await status(api, key, [teen], [NEWSLETTER, MARKETING])
        assert found[teen] == {"known": True, NEWSLETTER: None, MARKETING: "MINOR"}
        # Switched off by the teen: theirs to switch on again, so only not chosen.
        await switch(api, token, "NEWSLETTER", False)
        found = await status(api, key, [teen], [NEWSLETTER])
        assert found[teen] == {"known": True, NEWSLETTER: "NOT_CHOSEN"}
        await switch(api, token, "NEWSLETTER", True)
        # Withdrawn by the parent: switched off, and the teen may not switch it on again.
        assert (await parental.withdraw(api, link)).status_code == 200
        found = await status(api, key, [teen], [NEWSLETTER])
        assert found[teen] == {"known": True, NEWSLETTER: "MINOR"}

    async def test_nothing_consent_based_while_a_deletion_is_pending(self, api, officer) -> None:
        key = await a_key(api, officer, "CONSENT_READ")
        ada, token = await person(api, "ada@example.com")
        await switch(api, token, "MARKETING", True)
        await changed(api, "setDataSharing", {"purpose": "RESEARCH", "enabled": True}, token=token)
        assert (await request_deletion(api, token))["errors"] == []

        found = await status(api, key, [ada], [MARKETING, "data_sharing.research", SECURITY])
        assert found[ada] == {
            "known": True,
            MARKETING: "DELETION_PENDING",
            "data_sharing.research": "DELETION_PENDING",
            SECURITY: None,  # the account's own security still reaches the person
        }

    async def test_a_reported_account_is_treated_as_a_minors_until_reviewed(
        self, api, officer
    ) -> None:
        key = await a_key(api, officer, "CONSENT_READ")
        young, token = await person(
            api, "young@example.com", birthDate=birth_date_for_age(15), country="GB"
        )
        await switch(api, token, "MARKETING", True)
        assert (await status(api, key, [young], [MARKETING]))[young][MARKETING] is None

        report = {"input": {"accountId": young, "details": "This is my little sister, she is 11"}}
        assert (await gql(api, REPORT, report))["data"]["reportChildAccount"]["errors"] == []

        found = await status(api, key, [young], [MARKETING, SECURITY])
        assert found[young] == {"known": True, MARKETING: "RESTRICTED", SECURITY: None}

    async def test_the_global_privacy_control_signal_and_a_choice_against_it(
        self, api, officer
    ) -> None:
        key = await a_key(api, officer, "CONSENT_READ")
        gpc, _ = await person(api, "gpc@example.com", headers={"Sec-GPC": "1"})
        chose, token = await person(api, "chose@example.com", headers={"Sec-GPC": "1"})
        await changed(api, "setCookieConsent", {"advertising": True}, token=token)
        plain, _ = await person(api, "plain@example.com")

        found = await status(api, key, [gpc, chose, plain], [ADVERTISING])
        assert found[gpc] == {"known": True, ADVERTISING: "GPC"}
        # Switched on after the signal: the person's explicit choice stands.
        assert found[chose] == {"known": True, ADVERTISING: None}
        assert found[plain] == {"known": True, ADVERTISING: "NOT_CHOSEN"}

    @pytest.mark.parametrize(
        ("keys", "message"),
        [
            (["communication.email.marketting"], "Unknown key 'communication.email.marketting'"),
            (["visibility.profile"], "visibility.profile is a visibility setting"),
            (["data_sharing.third_party_marketing"], "marketing was withdrawn"),
            ([], "1 to 10 keys"),
            ([f"{MARKETING}"] + [f"cookies.x{n}" for n in range(10)], "1 to 10 keys"),
        ],
    )
    async def test_keys_that_cannot_be_answered_are_a_clear_error(
        self, api, officer, keys, message
    ) -> None:
        key = await a_key(api, officer, "CONSENT_READ")
        body = await gql(api, STATUS, {"ids": [str(uuid.uuid4())], "keys": keys}, token=key)
        assert body["data"] is None
        [error] = body["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "keys"}
        assert message in error["message"]

    async def test_more_than_a_thousand_ids_are_refused_and_nothing_is_written(
        self, api, officer
    ) -> None:
        key = await a_key(api, officer, "CONSENT_READ")
        ids = [str(uuid.uuid4()) for _ in range(1001)]
        with count_statements(database_behind(api).engine) as statements:
            body = await gql(api, STATUS, {"ids": ids, "keys": [MARKETING]}, token=key)
        assert body["data"] is None
        [error] = body["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "accountIds"}
        assert "1 to 1,000 accounts" in error["message"]
        # The key is looked up; nothing else is read, and nothing is written.
        assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")
        body = await gql(api, STATUS, {"ids": [], "keys": [MARKETING]}, token=key)
        assert body["errors"][0]["extensions"]["field"] == "accountIds"

    async def test_one_and_a_thousand_accounts_cost_the_same_statements(
        self, api, officer, database
    ) -> None:
        key = await a_key(api, officer, "CONSENT_READ")
        ada, token = await person(api, "ada@example.com")
        await switch(api, token, "MARKETING", True)
        rows = [
            {
                "id": uuid.uuid4(),
                "email": f"member{n:04d}@example.org",
                "password_hash": "x",
                "display_name": f"Member {n}",
                "role": Role.USER,
                "created_at": datetime.now(UTC),
                "updated_at": datetime.now(UTC),
            }
            for n in range(999)
        ]
        async with database.transaction() as session:
            await session.execute(insert(Account), rows)
        thousand = [ada, *(str(row["id"]) for row in rows)]
        engine = database_behind(api).engine
        keys = [MARKETING, SECURITY, RESEARCH]

        with count_statements(engine) as one:
            found = await status(api, key, [ada], keys)
        assert found[ada] == {
            "known": True,
            MARKETING: None,
            SECURITY: None,
            RESEARCH: "NOT_CHOSEN",
        }
        with count_statements(engine) as many:
            found = await status(api, key, thousand, keys)
        assert len(found) == 1000 and all(answer["known"] for answer in found.values())
        assert found[ada][MARKETING] is None
        assert {answer[MARKETING] for id_, answer in found.items() if id_ != ada} == {"NOT_CHOSEN"}
        # The key, the accounts, their choices for the keys asked.
        assert len(one) == len(many) == 3, many


class TestSuppressedAccounts:
    async def test_a_mailer_syncs_opt_outs_page_by_page_and_then_only_new_ones(
        self, api, officer
    ) -> None:
        key = await a_key(api, officer, "SUPPRESSIONS_READ")
        ada, ada_token = await person(api, "ada@example.com")
        grace, grace_token = await person(api, "grace@example.com")
        for token in (ada_token, grace_token):
            await switch(api, token, "MARKETING", True)
            await switch(api, token, "NEWSLETTER", True)
        await changed(api, "optOutOfMarketing", None, token=ada_token)  # two switched off
        await switch(api, grace_token, "NEWSLETTER", False)
        await switch(api, grace_token, "SECURITY_ALERTS", True, channel="PUSH")  # not an opt-out

        first = (await gql(api, FEED, {"first": 2}, token=key))["data"]["suppressedAccounts"]
        assert first["pageInfo"]["hasNextPage"] is True
        rest = (await gql(api, FEED, {"after": first["pageInfo"]["endCursor"]}, token=key))["data"][
            "suppressedAccounts"
        ]
        assert rest["pageInfo"]["hasNextPage"] is False
        synced = [edge["node"] for edge in first["edges"] + rest["edges"]]
        assert sorted((n["accountId"], n["key"]) for n in synced) == sorted(
            [(ada, MARKETING), (ada, NEWSLETTER), (grace, NEWSLETTER)]
        )
        assert synced[-1]["accountId"] == grace and synced[-1]["source"] == "API"
        assert {(n["channel"], n["topic"]) for n in synced} == {
            ("EMAIL", "MARKETING"),
            ("EMAIL", "NEWSLETTER"),
        }
        times = [n["occurredAt"] for n in synced]
        assert times == sorted(times)

        # Later: only what happened since the cursor the mailer kept.
        kept = rest["pageInfo"]["endCursor"]
        await switch(api, grace_token, "MARKETING", False)
        later = (await gql(api, FEED, {"after": kept}, token=key))["data"]["suppressedAccounts"]
        assert [(e["node"]["accountId"], e["node"]["key"]) for e in later["edges"]] == [
            (grace, MARKETING)
        ]
        empty = (await gql(api, FEED, {"after": later["pageInfo"]["endCursor"]}, token=key))[
            "data"
        ]["suppressedAccounts"]
        assert empty == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}

        since = later["edges"][0]["node"]["occurredAt"]
        from_then = (await gql(api, FEED, {"since": since}, token=key))["data"][
            "suppressedAccounts"
        ]
        assert [e["node"]["key"] for e in from_then["edges"]] == [MARKETING]

    async def test_bad_cursors_and_times_are_refused(self, api, officer) -> None:
        key = await a_key(api, officer, "SUPPRESSIONS_READ")
        for variables, field in (
            ({"after": "bm90IG91cnM="}, "after"),
            ({"first": 101}, "first"),
            ({"since": "2026-01-01T00:00:00"}, "since"),
        ):
            body = await gql(api, FEED, variables, token=key)
            assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": field}

    async def test_an_opt_out_is_listed_once_it_has_settled(self, client, database) -> None:
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "officer@example.com")
        key = await a_key(client, officer, "SUPPRESSIONS_READ")
        _, token = await person(client, "ada@example.com")
        await switch(client, token, "MARKETING", True)
        await switch(client, token, "MARKETING", False)
        # By default a minute: a change still being committed cannot be passed by a cursor.
        body = await gql(client, FEED, token=key)
        assert body["data"]["suppressedAccounts"]["edges"] == []
