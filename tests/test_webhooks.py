"""Webhooks: officers register endpoints; every consent change, deletion, erasure and policy
version reaches them signed (checked with the independent `standardwebhooks` package) by a real
HTTP receiver, retried with backoff, disabled after a day of failures, replayed on request, and
never sent to a private address."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import trustme
from sqlalchemy import func, select, update
from standardwebhooks import Webhook

from auth.sealing import Sealer, UnreadableSecret, new_key
from models import (
    Account,
    AuditEntry,
    ConsentEvent,
    Database,
    Role,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from privacy_api.config import Config, ConfigError, load_config, webhook_sealer
from resolvers import notifications
from resolvers import webhooks as webhooks_resolver
from tests.conftest import TEST_SECRET, TEST_WEBHOOK_KEY, client_of, make_config
from tests.helpers import (
    PASSWORD,
    count_statements,
    database_behind,
    gql,
    logged_in,
    run_cli,
    run_until_stopped,
    signed_up,
    staff_token,
)
from tests.test_observability import scrape, value
from workers.purge import purge_due_accounts
from workers.webhooks import Delivery, StepReport, deliver_step, run

ALL_EVENTS = [
    "CONSENT_CHANGED",
    "ACCOUNT_DELETION_REQUESTED",
    "ACCOUNT_DELETION_CANCELLED",
    "ACCOUNT_ERASED",
    "POLICY_PUBLISHED",
]
CREATE = """
mutation Create($input: CreateWebhookInput!) {
  createWebhook(input: $input) {
    webhook { id url description events disabledAt }
    secret
    errors { field code message }
  }
}
"""
WEBHOOKS = "{ webhooks { id url events failingSince pausedUntil disabledAt disabledReason } }"
DELIVERIES = """
query Log($id: ID!) {
  webhookDeliveries(webhookId: $id, first: 100) {
    edges { node {
      messageId eventType status attempts nextAttemptAt lastStatusCode lastError deliveredAt
    } }
  }
}
"""
DISABLE = (
    "mutation D($id: ID!) { disableWebhook(id: $id) { webhook { disabledAt } errors { code } } }"
)
ENABLE = (
    "mutation E($id: ID!) { enableWebhook(id: $id) { webhook { disabledAt } errors { code } } }"
)
ROTATE = """
mutation R($id: ID!) { rotateWebhookSecret(id: $id) { secret errors { code } } }
"""
REPLAY = """
mutation Replay($input: ReplayWebhookEventsInput!) {
  replayWebhookEvents(input: $input) { replayed errors { field code message } }
}
"""
TOGGLE = """
mutation Toggle($enabled: Boolean!) {
  setCommunicationPreference(input: {channel: EMAIL, topic: NEWSLETTER, enabled: $enabled}) {
    errors { code }
  }
}
"""
REQUEST_DELETION = """
mutation Delete($password: String!) {
  requestAccountDeletion(input: {password: $password}) { errors { code } }
}
"""
CANCEL_DELETION = "mutation { cancelAccountDeletion { errors { code } } }"
PUBLISH = """
mutation Publish($input: PublishPolicyVersionInput!) {
  publishPolicyVersion(input: $input) { errors { code } }
}
"""
ME_ID = "{ me { id } }"
PHONE = "+447400123456"


class _Server(ThreadingHTTPServer):
    # The worker opens up to ten connections at once; with the standard backlog of 5 the kernel
    # drops the others' first SYN and they connect only when it is sent again, a second later.
    request_queue_size = 64


class Receiver:
    """A real HTTP server on a free port that records what it is sent and answers each request
    with the next of `answers` (then 204)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.answers: list[int] = []
        self.always: int | None = None
        # When given, a request is answered only once this is set: a receiver that hangs.
        self.held: threading.Event | None = None
        # Set once `expected` requests have come.
        self.expected: int | None = None
        self.all_came = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append((self.path, dict(self.headers.items()), body))
                    status = receiver.always or (
                        receiver.answers.pop(0) if receiver.answers else 204
                    )
                    if len(receiver.received) == receiver.expected:
                        receiver.all_came.set()
                if receiver.held is not None:
                    receiver.held.wait()
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("location", "/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = _Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        # A short poll, so that stopping it (after every test) does not wait half a second.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        return [json.loads(body) for p, _, body in self.received if path in (None, p)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def hanging() -> Iterator[Receiver]:
    """A receiver that takes every request and answers none until the test lets it."""
    server = Receiver()
    server.held = threading.Event()
    server.thread.start()
    yield server
    server.held.set()
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def local_config(clean_database_url: str) -> Config:
    """Development, with the explicit setting that lets webhooks reach a local receiver."""
    return make_config(clean_database_url, webhooks_allow_private=True)


@pytest.fixture
async def local_client(local_config: Config) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(local_config) as http:
        yield http


SEALER = Sealer((TEST_WEBHOOK_KEY,))
LOCAL = Delivery(
    https_only=False, allow_private=True, disable_after=timedelta(hours=24), sealer=SEALER
)


async def officer(client: httpx.AsyncClient, database: Database) -> str:
    return await staff_token(client, database, Role.PRIVACY_OFFICER, "officer@example.com")


async def created(
    client: httpx.AsyncClient, token: str, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    variables = {"input": {"url": url, "events": events or ALL_EVENTS, "description": "CRM sync"}}
    body = await gql(client, CREATE, variables, token=token)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["createWebhook"]
    assert payload["errors"] == [], payload
    return payload


async def publish_policy(client: httpx.AsyncClient, token: str, *, material: bool = False) -> None:
    """A new policy version, published by the officer: one `policy.published` event."""
    policy = {"version": "2026-09", "summary": "Clearer words.", "material": material}
    body = await gql(client, PUBLISH, {"input": policy}, token=token)
    assert body["data"]["publishPolicyVersion"]["errors"] == [], body


async def policy_watched(client: httpx.AsyncClient, database: Database, url: str) -> str:
    """An officer's token, once `url` is registered for `POLICY_PUBLISHED` and a policy is
    published: one event waits for it."""
    token = await officer(client, database)
    await created(client, token, url, ["POLICY_PUBLISHED"])
    await publish_policy(client, token)
    return token


async def webhooks(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    """Every endpoint, each with its delivery log under `deliveries`."""
    body = await gql(client, WEBHOOKS, token=token)
    assert "errors" not in body, body
    found: list[dict[str, Any]] = body["data"]["webhooks"]
    for hook in found:
        log = await gql(client, DELIVERIES, {"id": hook["id"]}, token=token)
        assert "errors" not in log, log
        hook["deliveries"] = log["data"]["webhookDeliveries"]
    return found


def log_of(hook: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in hook["deliveries"]["edges"]]


async def deliver_all(database: Database, delivery: Delivery = LOCAL, **kw: Any) -> StepReport:
    """Steps until nothing more is due, as `deliver-webhooks --once` runs them."""
    attempted = delivered = fanned = 0
    while True:
        report = await deliver_step(database, delivery, **kw)
        attempted += report.attempted
        delivered += report.delivered
        fanned += report.fanned_out
        if report.attempted == 0 and report.fanned_out == 0:
            return StepReport(fanned, attempted, delivered)


def verified(secret: str, receiver: Receiver) -> list[dict[str, Any]]:
    """Every body the receiver got, each checked with the standardwebhooks package."""
    checker = Webhook(secret)
    return [checker.verify(body, headers) for _, headers, body in receiver.received]


class TestRegistering:
    async def test_an_anonymous_caller_is_refused(self, client) -> None:
        body = await gql(client, CREATE, {"input": {"url": "https://x.example", "events": []}})
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert body["data"] is None

    @pytest.mark.parametrize("role", [None, Role.SUPPORT])
    async def test_people_and_support_staff_are_refused(self, client, database, role) -> None:
        if role is None:
            token = await signed_up(client)
        else:
            token = await staff_token(client, database, role, "support@example.com")
        for query, variables in (
            (CREATE, {"input": {"url": "https://x.example", "events": ["CONSENT_CHANGED"]}}),
            (WEBHOOKS, {}),
            (DELIVERIES, {"id": "00000000-0000-0000-0000-000000000001"}),
            (DISABLE, {"id": "00000000-0000-0000-0000-000000000001"}),
            (ROTATE, {"id": "00000000-0000-0000-0000-000000000001"}),
        ):
            body = await gql(client, query, variables, token=token)
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body

    async def test_an_unknown_webhook_is_not_found(self, client, database) -> None:
        token = await officer(client, database)
        body = await gql(client, DISABLE, {"id": "not-an-id"}, token=token)
        assert body["data"]["disableWebhook"]["errors"] == [{"code": "NOT_FOUND"}]

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8080/hook",
            "https://127.0.0.1/hook",
            "https://10.1.2.3/hook",
            "https://192.168.0.10/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://[fe80::1]/hook",
            "https://0.0.0.0/hook",
            "https://localhost/hook",  # a name that resolves to loopback
            "https://2130706433/hook",  # 127.0.0.1 written as one number
            "https://0x7f.1/hook",
            "https://100.64.0.1/hook",  # shared address space (carrier-grade NAT)
            # IPv6 forms that carry an IPv4 address: judged by the address they carry.
            "https://[::127.0.0.1]/hook",  # IPv4-compatible
            "https://[::ffff:0:127.0.0.1]/hook",  # IPv4-translated (SIIT)
            "https://[64:ff9b::169.254.169.254]/hook",  # NAT64 to the metadata service
            "https://[64:ff9b:1::a00:1]/hook",  # local-use NAT64 to 10.0.0.1
            "https://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
            "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",  # Teredo to 127.0.0.1
            "https://[fec0::1]/hook",  # site-local
            "ftp://example.com/hook",
            "https://user:pass@example.com/hook",
            "not a url",
        ],
    )
    async def test_unsafe_urls_are_refused(self, client, database, url) -> None:
        token = await officer(client, database)
        body = await gql(
            client, CREATE, {"input": {"url": url, "events": ["CONSENT_CHANGED"]}}, token=token
        )
        payload = body["data"]["createWebhook"]
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [("url", "INVALID_INPUT")]
        assert payload["secret"] is None
        assert await webhooks(client, token) == []

    async def test_a_refusal_does_not_tell_what_a_name_resolves_to(self, client, database) -> None:
        token = await officer(client, database)
        body = await gql(
            client,
            CREATE,
            {"input": {"url": "https://localhost/hook", "events": ["CONSENT_CHANGED"]}},
            token=token,
        )
        [error] = body["data"]["createWebhook"]["errors"]
        assert "localhost" in error["message"] and "public" in error["message"]
        assert "127.0.0.1" not in error["message"] and "::1" not in error["message"]

    async def test_public_addresses_written_in_ipv6_are_accepted(self, client, database) -> None:
        token = await officer(client, database)
        for url in ("https://[64:ff9b::5db8:d70e]/hook", "https://[2002:5db8:d70e::1]/hook"):
            await created(client, token, url, ["CONSENT_CHANGED"])
        assert len(await webhooks(client, token)) == 2

    async def test_production_takes_https_only(self, production_client, database) -> None:
        token = await officer(production_client, database)
        body = await gql(
            production_client,
            CREATE,
            {"input": {"url": "http://93.184.215.14/hook", "events": ["CONSENT_CHANGED"]}},
            token=token,
        )
        assert body["data"]["createWebhook"]["errors"][0]["message"] == "Use an https:// URL."

    async def test_no_event_types_is_refused(self, client, database) -> None:
        token = await officer(client, database)
        body = await gql(
            client, CREATE, {"input": {"url": "https://93.184.215.14/", "events": []}}, token=token
        )
        assert body["data"]["createWebhook"]["errors"][0]["field"] == "events"

    async def test_the_secret_is_shown_once_and_every_change_is_audited(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        payload = await created(local_client, token, receiver.url, ["CONSENT_CHANGED"])
        assert payload["secret"].startswith("whsec_")
        hook_id = payload["webhook"]["id"]
        [listed] = await webhooks(local_client, token)
        assert listed["id"] == hook_id and listed["events"] == ["CONSENT_CHANGED"]
        assert payload["secret"] not in json.dumps(listed)

        rotated = await gql(local_client, ROTATE, {"id": hook_id}, token=token)
        new_secret = rotated["data"]["rotateWebhookSecret"]["secret"]
        assert new_secret.startswith("whsec_") and new_secret != payload["secret"]
        body = await gql(local_client, DISABLE, {"id": hook_id}, token=token)
        assert body["data"]["disableWebhook"]["webhook"]["disabledAt"] is not None
        body = await gql(local_client, ENABLE, {"id": hook_id}, token=token)
        assert body["data"]["enableWebhook"]["webhook"]["disabledAt"] is None

        async with database.session() as session:
            actions = list(await session.scalars(select(AuditEntry.action)))
        assert actions.count("webhook.create") == 1
        assert {"webhook.rotate_secret", "webhook.disable", "webhook.enable"} <= set(actions)


class TestDelivery:
    async def test_consent_changes_arrive_signed_with_the_ledger_numbers(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        secret = (await created(local_client, token, receiver.url + "/hooks"))["secret"]
        person = await signed_up(local_client, phone=PHONE)
        await gql(local_client, TOGGLE, {"enabled": True}, token=person)

        report = await deliver_all(database)

        assert report.attempted == report.delivered == len(receiver.received) > 0
        bodies = verified(secret, receiver)
        async with database.session() as session:
            account = await session.scalar(select(Account).where(Account.role == Role.USER))
            assert account is not None
            ledger = list(
                await session.scalars(
                    select(ConsentEvent)
                    .where(ConsentEvent.account_id == account.id)
                    .order_by(ConsentEvent.seq)
                )
            )
        changes = sorted(
            (b["data"] for b in bodies if b["type"] == "consent.changed"),
            key=lambda data: data["sequence"],
        )
        assert [(c["sequence"], c["eventHash"], c["key"]) for c in changes] == [
            (event.seq, event.hash, event.key) for event in ledger
        ]
        newest = changes[-1]
        assert newest["accountId"] == str(account.id)
        assert (newest["oldValue"], newest["newValue"]) == ("false", "true")
        assert newest["actor"] == "person" and newest["source"] == "api"
        for path, headers, raw in receiver.received:
            assert path == "/hooks"
            assert headers["webhook-id"].startswith("msg_")
            assert b"@" not in raw and PHONE.encode() not in raw and b"Ada" not in raw

        [hook] = await webhooks(local_client, token)
        assert {(d["status"], d["attempts"]) for d in log_of(hook)} == {("DELIVERED", 1)}
        assert (await deliver_step(database, LOCAL)).attempted == 0  # each once

    async def test_a_change_costs_the_same_whatever_the_number_of_endpoints(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        person = await signed_up(local_client)
        engine = database_behind(local_client).engine
        with count_statements(engine) as without:
            await gql(local_client, TOGGLE, {"enabled": True}, token=person)
        for number in range(5):
            await created(local_client, token, f"{receiver.url}/{number}")
        with count_statements(engine) as with_five:
            await gql(local_client, TOGGLE, {"enabled": False}, token=person)
        assert len(with_five) == len(without)
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
        await deliver_all(database)
        async with database.session() as session:
            # Fanned out by the worker: one delivery per endpoint, for the event made after it.
            assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 5

    async def test_deletion_erasure_and_policy_events(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        hook = await created(
            local_client,
            token,
            receiver.url,
            [e for e in ALL_EVENTS if e != "CONSENT_CHANGED"],
        )
        person = await signed_up(local_client, phone=PHONE)
        account_id = (await gql(local_client, ME_ID, token=person))["data"]["me"]["id"]
        await gql(local_client, REQUEST_DELETION, {"password": PASSWORD}, token=person)
        person = await signed_up(local_client, email="bo@example.com")
        other_id = (await gql(local_client, ME_ID, token=person))["data"]["me"]["id"]
        await gql(local_client, REQUEST_DELETION, {"password": PASSWORD}, token=person)
        person = await logged_in(local_client, "bo@example.com")  # signed out everywhere
        body = await gql(local_client, CANCEL_DELETION, token=person)
        assert body["data"]["cancelAccountDeletion"]["errors"] == []
        await publish_policy(local_client, token, material=True)
        async with database.transaction() as session:
            waiting = await notifications.pending(session)
            await notifications.mark_sent(session, [message.id for message in waiting])
        purged = await purge_due_accounts(database, TEST_SECRET, utcnow() + timedelta(days=31))
        assert purged.purged == 1

        await deliver_all(database)

        bodies = verified(hook["secret"], receiver)
        kinds = [(b["type"], b["data"].get("accountId")) for b in bodies]
        assert ("account.deletion_requested", other_id) in kinds
        assert ("account.deletion_cancelled", other_id) in kinds
        assert ("policy.published", None) in kinds
        erased = next(b["data"] for b in bodies if b["type"] == "account.erased")
        assert set(erased) == {"pseudonym", "occurredAt"}
        assert erased["pseudonym"] != account_id
        # The deletion request still waiting when the account was erased went out with the id
        # the receiver knows, so that it can erase its copy; nothing else names it.
        requested = [b["data"] for b in bodies if b["type"] == "account.deletion_requested"]
        assert {r["accountId"] for r in requested} == {account_id, other_id}
        for raw, body in zip((raw for _, _, raw in receiver.received), bodies, strict=True):
            if body["type"] != "account.deletion_requested":
                assert account_id.encode() not in raw
            assert b"@" not in raw and PHONE.encode() not in raw

    async def test_a_rotated_secret_signs_beside_the_old_one_for_a_day(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        hook = await created(local_client, token, receiver.url)
        rotated = await gql(local_client, ROTATE, {"id": hook["webhook"]["id"]}, token=token)
        await signed_up(local_client)
        await deliver_all(database)
        assert verified(hook["secret"], receiver)
        assert verified(rotated["data"]["rotateWebhookSecret"]["secret"], receiver)


async def stored_secrets(database: Database) -> list[str]:
    async with database.session() as session:
        rows = await session.execute(
            select(WebhookEndpoint.secret, WebhookEndpoint.previous_secret)
        )
        return [secret for row in rows for secret in row if secret is not None]


class TestSecretsAtRest:
    async def test_the_database_holds_no_secret_in_the_clear(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        hook = await created(local_client, token, receiver.url)
        rotated = await gql(local_client, ROTATE, {"id": hook["webhook"]["id"]}, token=token)
        new_secret = rotated["data"]["rotateWebhookSecret"]["secret"]

        stored = await stored_secrets(database)

        assert len(stored) == 2
        for secret in (hook["secret"], new_secret):
            key = secret.removeprefix("whsec_")
            assert all(key not in value and "whsec_" not in value for value in stored)
        await signed_up(local_client)
        await deliver_all(database)
        assert verified(hook["secret"], receiver) and verified(new_secret, receiver)

    async def test_a_worker_with_another_key_signs_nothing(
        self, local_client, database, receiver
    ) -> None:
        await policy_watched(local_client, database, receiver.url)
        stranger = dataclasses.replace(LOCAL, sealer=Sealer((new_key(),)))
        with pytest.raises(UnreadableSecret, match="PRIVACY_API_WEBHOOK_SECRET_KEY"):
            await deliver_step(database, stranger)
        assert receiver.received == []

    async def test_migrate_seals_plain_secrets_and_moves_them_to_a_new_key(
        self, local_client, database, local_config, receiver, tmp_path
    ) -> None:
        token = await officer(local_client, database)
        await created(local_client, token, receiver.url, ["POLICY_PUBLISHED"])
        plain = "whsec_" + "A" * 43 + "="
        async with database.transaction() as session:  # as a version before sealing kept it
            endpoint = await session.scalar(select(WebhookEndpoint))
            assert endpoint is not None
            endpoint.secret = plain
        first = new_key()

        code, _, err = await run_cli(
            local_config.database_url, tmp_path, "migrate", PRIVACY_API_WEBHOOK_SECRET_KEY=first
        )

        assert code == 0, err
        [sealed] = await stored_secrets(database)
        assert sealed != plain and Sealer((first,)).open(sealed) == plain
        # The key rotated: the new one in front, the old one behind it until migrate ran.
        second = new_key()
        code, _, err = await run_cli(
            local_config.database_url,
            tmp_path,
            "migrate",
            PRIVACY_API_WEBHOOK_SECRET_KEY=f"{second},{first}",
        )
        assert code == 0, err
        await publish_policy(local_client, token)
        await deliver_all(database, dataclasses.replace(LOCAL, sealer=Sealer((second,))))
        assert len(verified(plain, receiver)) == 1

    async def test_production_refuses_to_deliver_or_seal_without_a_key(
        self, local_client, database, local_config, receiver, tmp_path
    ) -> None:
        token = await officer(local_client, database)
        await created(local_client, token, receiver.url)
        production = {
            "PRIVACY_API_ENV": "production",
            "PRIVACY_API_PUBLIC_URL": "https://privacy.example.com",
            "PRIVACY_API_WEBHOOK_SECRET_KEY": "",
        }
        for command in (["deliver-webhooks", "--once"], ["migrate"]):
            code, _, err = await run_cli(
                local_config.database_url, tmp_path, *command, **production
            )
            assert code == 2, command
            assert "PRIVACY_API_WEBHOOK_SECRET_KEY is required in production" in err
            assert "Traceback" not in err
        with pytest.raises(ConfigError, match="PRIVACY_API_WEBHOOK_SECRET_KEY"):
            webhook_sealer(load_config({**production, "PRIVACY_API_SECRET_KEY": TEST_SECRET}))
        assert not (tmp_path / "webhook_secret_key").exists()

    def test_development_keeps_one_generated_key_and_a_bad_key_is_refused(self, tmp_path) -> None:
        env = {"PRIVACY_API_DATA_DIR": str(tmp_path), "PRIVACY_API_SECRET_KEY": TEST_SECRET}
        first, second = load_config(env), load_config(env)
        assert first.webhook_secret_keys == second.webhook_secret_keys
        assert (tmp_path / "webhook_secret_key").stat().st_mode & 0o077 == 0
        with pytest.raises(ConfigError, match="PRIVACY_API_WEBHOOK_SECRET_KEY"):
            load_config({**env, "PRIVACY_API_WEBHOOK_SECRET_KEY": "not-a-key"})


REPORT_CHILD = """
mutation Report($input: ChildReportInput!) {
  reportChildAccount(input: $input) { request { id } errors { code } }
}
"""
REVIEW_REPORT = """
mutation Review($input: ChildReportReviewInput!) {
  reviewChildReport(input: $input) { errors { code } }
}
"""


async def erased_at_once(client: httpx.AsyncClient, database: Database, token: str) -> str:
    """A person reported as a child, the report reviewed as DELETE (no grace period) and the
    purge run before any webhook went out: the erased account's id."""
    person = await signed_up(client)
    account_id: str = (await gql(client, ME_ID, token=person))["data"]["me"]["id"]
    report = {"accountId": account_id, "details": "In year 5"}
    body = await gql(client, REPORT_CHILD, {"input": report})
    request_id = body["data"]["reportChildAccount"]["request"]["id"]
    review = {"requestId": request_id, "decision": "DELETE", "reason": "Checked the report"}
    body = await gql(client, REVIEW_REPORT, {"input": review}, token=token)
    assert body["data"]["reviewChildReport"]["errors"] == [], body
    async with database.transaction() as session:  # the deletion notice went out
        waiting = await notifications.pending(session)
        await notifications.mark_sent(session, [message.id for message in waiting])
    assert (await purge_due_accounts(database, TEST_SECRET, utcnow())).purged == 1
    return account_id


async def ids_in_outbox(database: Database) -> str:
    """Every account id and payload the webhook outbox holds, as one text."""
    async with database.session() as session:
        rows = await session.execute(select(WebhookEvent.account_id, WebhookEvent.payload))
        return " ".join(f"{account} {payload}" for account, payload in rows)


class TestImmediateErasure:
    async def test_receivers_learn_which_account_to_erase_before_it_is_pseudonymised(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        hook = await created(
            local_client, token, receiver.url, ["ACCOUNT_DELETION_REQUESTED", "ACCOUNT_ERASED"]
        )
        account_id = await erased_at_once(local_client, database, token)

        await deliver_all(database)

        bodies = verified(hook["secret"], receiver)
        [requested] = [b["data"] for b in bodies if b["type"] == "account.deletion_requested"]
        [erased] = [b["data"] for b in bodies if b["type"] == "account.erased"]
        assert requested["accountId"] == account_id
        assert requested["requestedBy"] == "staff"
        assert erased["pseudonym"] != account_id
        # Delivered everywhere: the outbox keeps only the pseudonym.
        outbox = await ids_in_outbox(database)
        assert account_id not in outbox and erased["pseudonym"] in outbox

    async def test_the_real_id_is_kept_only_while_an_endpoint_may_still_take_it(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        await created(local_client, token, receiver.url, ["ACCOUNT_DELETION_REQUESTED"])
        receiver.always = 503
        account_id = await erased_at_once(local_client, database, token)
        start = utcnow()

        await deliver_step(database, LOCAL, now=start)
        await deliver_step(database, LOCAL, now=start + timedelta(hours=1))
        assert account_id in await ids_in_outbox(database)  # to be retried

        # Failing for a day: the endpoint is disabled and will not take it; the id goes.
        await deliver_step(database, LOCAL, now=start + timedelta(hours=25))
        assert (await webhooks(local_client, token))[0]["disabledAt"] is not None
        await deliver_step(database, LOCAL, now=start + timedelta(hours=25, seconds=1))
        assert account_id not in await ids_in_outbox(database)
        assert len(receiver.received) == 3


class TestAHangingReceiver:
    async def test_delays_only_its_own_deliveries(
        self, local_client, database, receiver, hanging
    ) -> None:
        token = await officer(local_client, database)
        healthy = await created(local_client, token, receiver.url, ["CONSENT_CHANGED"])
        await created(local_client, token, hanging.url, ["CONSENT_CHANGED"])
        await signed_up(local_client)
        async with database.session() as session:
            events = await session.scalar(select(func.count()).select_from(WebhookEvent))
        assert events > 2 * webhooks_resolver.PER_ENDPOINT
        receiver.expected = events
        stop = asyncio.Event()
        worker = asyncio.create_task(run(database, LOCAL, once=False, stop=stop))
        try:
            # Every event reaches the healthy receiver while the hanging one still holds its
            # first requests: no attempt to it has ended (none timed out, none answered).
            assert await asyncio.to_thread(receiver.all_came.wait, 60)
            [*_, hung] = await webhooks(local_client, token)
            assert {(d["status"], d["attempts"]) for d in log_of(hung)} == {("PENDING", 0)}
            assert len(hanging.received) <= webhooks_resolver.PER_ENDPOINT  # its own lane
        finally:
            assert hanging.held is not None
            hanging.held.set()
            stop.set()
            await worker
        assert len(verified(healthy["secret"], receiver)) == events

    async def test_a_failing_receiver_is_skipped_until_a_probe_succeeds(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        await created(local_client, token, receiver.url, ["CONSENT_CHANGED"])
        await signed_up(local_client)
        async with database.session() as session:
            events = await session.scalar(select(func.count()).select_from(WebhookEvent))
        receiver.always = 503
        start = utcnow()

        await deliver_all(database, now=start)

        # The circuit opened after a few failures: the other deliveries were not attempted.
        tried = len(receiver.received)
        assert webhooks_resolver.BREAKER_AFTER <= tried < events
        [hook] = await webhooks(local_client, token)
        assert sum(entry["attempts"] == 0 for entry in log_of(hook)) == events - tried
        assert datetime.fromisoformat(hook["pausedUntil"]) > start
        assert (
            await deliver_step(database, LOCAL, now=start + timedelta(seconds=1))
        ).attempted == 0

        # Once the pause is over, one delivery probes the receiver; its success closes the circuit.
        receiver.always = None
        later = start + webhooks_resolver.BREAKER_PAUSE_MAX
        assert (await deliver_step(database, LOCAL, now=later)).attempted == 1
        await deliver_all(database, now=later)
        [hook] = await webhooks(local_client, token)
        assert {entry["status"] for entry in log_of(hook)} == {"DELIVERED"}
        assert hook["pausedUntil"] is None and hook["failingSince"] is None
        assert len({h["webhook-id"] for _, h, _ in receiver.received}) == events


class TestRetries:
    async def test_a_failure_is_retried_later_with_the_same_webhook_id(
        self, local_client, database, receiver
    ) -> None:
        token = await policy_watched(local_client, database, receiver.url)
        receiver.answers = [500, 503]
        start = utcnow()

        assert (await deliver_step(database, LOCAL, now=start)).delivered == 0
        [hook] = await webhooks(local_client, token)
        [entry] = log_of(hook)
        assert (entry["status"], entry["attempts"], entry["lastStatusCode"]) == ("PENDING", 1, 500)
        assert entry["lastError"] == "HTTP 500"
        first_wait = datetime.fromisoformat(entry["nextAttemptAt"]) - start
        assert hook["failingSince"] is not None

        # Not due again yet: nothing is sent.
        assert (await deliver_step(database, LOCAL, now=start + first_wait / 2)).attempted == 0
        await deliver_step(database, LOCAL, now=start + first_wait)
        [entry] = log_of((await webhooks(local_client, token))[0])
        second_wait = datetime.fromisoformat(entry["nextAttemptAt"]) - (start + first_wait)
        assert second_wait == 2 * first_wait  # exponential backoff
        await deliver_step(database, LOCAL, now=start + first_wait + second_wait)

        [hook] = await webhooks(local_client, token)
        [entry] = log_of(hook)
        assert (entry["status"], entry["attempts"]) == ("DELIVERED", 3)
        assert hook["failingSince"] is None
        ids = {headers["webhook-id"] for _, headers, _ in receiver.received}
        assert len(receiver.received) == 3 and len(ids) == 1

    async def test_a_receiver_down_for_days_is_still_retried_every_two_hours(
        self, local_client, database, receiver
    ) -> None:
        # Kept enabled for a week of failures: the doubling wait must stay capped, however many
        # attempts a delivery has made (2 ** attempts once outgrew what a timedelta can hold).
        patient = dataclasses.replace(LOCAL, disable_after=timedelta(days=7))
        token = await policy_watched(local_client, database, receiver.url)
        receiver.always = 503
        now = utcnow()
        await deliver_step(database, patient, now=now)
        # As if it had failed for four days: every two hours since.
        async with database.transaction() as session:
            await session.execute(update(WebhookDelivery).values(attempts=48))
        for _ in range(2):
            now += timedelta(hours=2)
            await deliver_step(database, patient, now=now)
        now += timedelta(hours=2)

        [entry] = log_of((await webhooks(local_client, token))[0])
        assert (entry["status"], entry["attempts"]) == ("PENDING", 50)
        last_attempt = now - timedelta(hours=2)
        assert datetime.fromisoformat(entry["nextAttemptAt"]) - last_attempt == timedelta(hours=2)

        receiver.always = None
        assert (await deliver_step(database, patient, now=now)).delivered == 1

    async def test_redirects_are_not_followed(self, local_client, database, receiver) -> None:
        token = await policy_watched(local_client, database, receiver.url)
        receiver.answers = [302]
        await deliver_step(database, LOCAL)
        assert [path for path, _, _ in receiver.received] == ["/"]
        [entry] = log_of((await webhooks(local_client, token))[0])
        assert (entry["status"], entry["lastStatusCode"]) == ("PENDING", 302)

    async def test_an_endpoint_failing_for_a_day_is_disabled(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        await created(local_client, token, receiver.url, ["CONSENT_CHANGED"])
        await signed_up(local_client)
        receiver.always = 500
        start = utcnow()
        await deliver_step(database, LOCAL, now=start)
        tried = len(receiver.received)
        [hook] = await webhooks(local_client, token)
        assert hook["disabledAt"] is None

        await deliver_step(database, LOCAL, now=start + timedelta(hours=23))
        assert (await webhooks(local_client, token))[0]["disabledAt"] is None
        await deliver_step(database, LOCAL, now=start + timedelta(hours=24, minutes=1))

        [hook] = await webhooks(local_client, token)
        assert hook["disabledAt"] is not None
        assert "24 hours" in hook["disabledReason"]
        sent = len(receiver.received)
        assert tried == webhooks_resolver.PER_ENDPOINT  # of the account's many events
        assert sent > 2 * tried  # a probe after the circuit opened, when the day was over
        assert (await deliver_step(database, LOCAL, now=start + timedelta(days=2))).attempted == 0
        assert len(receiver.received) == sent


class TestReplay:
    async def test_a_range_of_events_is_sent_again_with_the_same_ids(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        hook = await created(local_client, token, receiver.url, ["CONSENT_CHANGED"])
        hook_id = hook["webhook"]["id"]
        before = utcnow()
        person = await signed_up(local_client)
        middle = utcnow()
        await gql(local_client, TOGGLE, {"enabled": True}, token=person)
        after = utcnow()
        await deliver_all(database)
        first_ids = [headers["webhook-id"] for _, headers, _ in receiver.received]
        async with database.session() as session:
            late = await session.scalar(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.created_at >= middle)
            )

        body = await gql(
            local_client,
            REPLAY,
            {
                "input": {
                    "webhookId": hook_id,
                    "since": middle.isoformat(),
                    "until": after.isoformat(),
                }
            },
            token=token,
        )
        assert body["data"]["replayWebhookEvents"] == {"replayed": late, "errors": []}
        await deliver_all(database)

        replayed = [headers["webhook-id"] for _, headers, _ in receiver.received[len(first_ids) :]]
        assert len(replayed) == late > 0
        assert set(replayed) <= set(first_ids)
        assert verified(hook["secret"], receiver)
        assert before < middle

    async def test_what_happened_while_disabled_or_before_registering_comes_by_replay(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        start = utcnow()
        person = await signed_up(local_client)  # before the endpoint exists
        hook = await created(local_client, token, receiver.url, ["CONSENT_CHANGED"])
        hook_id = hook["webhook"]["id"]
        await gql(local_client, DISABLE, {"id": hook_id}, token=token)
        await gql(local_client, TOGGLE, {"enabled": True}, token=person)  # while disabled
        await deliver_all(database)
        await gql(local_client, ENABLE, {"id": hook_id}, token=token)
        await deliver_all(database)
        assert receiver.received == []
        async with database.session() as session:
            events = await session.scalar(select(func.count()).select_from(WebhookEvent))

        window = {"webhookId": hook_id, "since": start.isoformat(), "until": utcnow().isoformat()}
        body = await gql(local_client, REPLAY, {"input": window}, token=token)
        assert body["data"]["replayWebhookEvents"]["replayed"] == events
        await deliver_all(database)

        bodies = verified(hook["secret"], receiver)
        sequences = sorted(b["data"]["sequence"] for b in bodies)
        assert sequences == list(range(1, events + 1))

    async def test_an_empty_or_backwards_range_is_refused(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        hook = await created(local_client, token, receiver.url)
        now = utcnow().isoformat()
        body = await gql(
            local_client,
            REPLAY,
            {"input": {"webhookId": hook["webhook"]["id"], "since": now, "until": now}},
            token=token,
        )
        payload = body["data"]["replayWebhookEvents"]
        assert payload["replayed"] is None
        assert payload["errors"][0]["code"] == "INVALID_INPUT"

    async def test_people_cannot_replay(self, local_client) -> None:
        person = await signed_up(local_client)
        now = utcnow().isoformat()
        body = await gql(
            local_client,
            REPLAY,
            {"input": {"webhookId": "x", "since": now, "until": now}},
            token=person,
        )
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


class TestAddressCheckedAtDelivery:
    async def test_a_private_address_is_refused_when_sending_too(
        self, local_client, database, receiver
    ) -> None:
        token = await policy_watched(local_client, database, receiver.url)
        strict = dataclasses.replace(LOCAL, allow_private=False)

        await deliver_step(database, strict)

        assert receiver.received == []
        [entry] = log_of((await webhooks(local_client, token))[0])
        assert entry["status"] == "PENDING"
        assert entry["lastError"].startswith("Refused: The host 127.0.0.1 is a loopback")


class TestAWorkerThatDies:
    async def test_what_it_had_claimed_is_sent_by_another_once_the_claim_is_stale(
        self, local_client, database, receiver
    ) -> None:
        await policy_watched(local_client, database, receiver.url)
        start = utcnow()
        async with database.transaction() as session:  # claimed, then the worker is gone
            await webhooks_resolver.fan_out(session, start)
            assert len(await webhooks_resolver.claim(session, start, SEALER)) == 1

        assert (
            await deliver_step(database, LOCAL, now=start + timedelta(minutes=1))
        ).attempted == 0
        later = start + webhooks_resolver.CLAIM_TIMEOUT + timedelta(seconds=1)
        assert (await deliver_step(database, LOCAL, now=later)).delivered == 1
        assert len(receiver.received) == 1


class TestRacingWorkers:
    async def test_two_workers_deliver_each_event_once_per_endpoint(
        self, local_client, database, local_config, receiver
    ) -> None:
        token = await officer(local_client, database)
        for path in ("a", "b"):
            await created(local_client, token, f"{receiver.url}/{path}", ["CONSENT_CHANGED"])
        person = await signed_up(local_client)
        for number in range(10):
            await gql(local_client, TOGGLE, {"enabled": number % 2 == 0}, token=person)
        async with database.session() as session:
            events = await session.scalar(select(func.count()).select_from(WebhookEvent))
        second = Database(local_config.database_url)
        try:
            await asyncio.gather(deliver_all(database, limit=5), deliver_all(second, limit=5))
        finally:
            await second.dispose()

        for path in ("/a", "/b"):
            ids = [h["webhook-id"] for p, h, _ in receiver.received if p == path]
            assert len(ids) == len(set(ids)) == events
        async with database.session() as session:
            delivered = await session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.attempts == 1, WebhookDelivery.delivered_at.is_not(None))
            )
        assert delivered == 2 * events


class TestCommandLine:
    async def test_deliver_webhooks_once_delivers_what_is_due_and_stops(
        self, local_client, database, local_config, receiver, tmp_path
    ) -> None:
        token = await officer(local_client, database)
        hook = await created(local_client, token, receiver.url, ["CONSENT_CHANGED"])
        await signed_up(local_client)
        async with database.session() as session:
            events = await session.scalar(select(func.count()).select_from(WebhookEvent))

        code, out, err = await run_cli(
            local_config.database_url,
            tmp_path,
            "deliver-webhooks",
            "--once",
            PRIVACY_API_WEBHOOKS_ALLOW_PRIVATE="1",
        )

        assert code == 0, err
        assert f"{events} delivered" in out
        assert len(verified(hook["secret"], receiver)) == events

    # A real process, for how it stops on SIGTERM; what it does on each database is the same
    # step the in-process tests run on both.
    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    async def test_deliver_webhooks_runs_until_told_to_stop(
        self, local_client, database, local_config, receiver, tmp_path
    ) -> None:
        await policy_watched(local_client, database, receiver.url)

        code, out = await run_until_stopped(
            local_config.database_url,
            tmp_path,
            "deliver-webhooks",
            lambda: bool(receiver.received),
            PRIVACY_API_WEBHOOKS_ALLOW_PRIVATE="1",
        )

        assert code == 0, out
        assert len(receiver.received) == 1
        assert "1 delivered" in out

    async def test_the_local_receiver_setting_is_refused_in_production(
        self, local_config, tmp_path
    ) -> None:
        code, _, err = await run_cli(
            local_config.database_url,
            tmp_path,
            "deliver-webhooks",
            "--once",
            PRIVACY_API_ENV="production",
            PRIVACY_API_PUBLIC_URL="https://privacy.example.com",
            PRIVACY_API_WEBHOOKS_ALLOW_PRIVATE="1",
        )
        assert code == 2
        assert "PRIVACY_API_WEBHOOKS_ALLOW_PRIVATE is for development only" in err


class TestPruning:
    async def test_events_delivered_long_ago_are_forgotten_and_waiting_ones_kept(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        await created(local_client, token, f"{receiver.url}/ok", ["CONSENT_CHANGED"])
        await signed_up(local_client)
        await deliver_all(database)
        await created(local_client, token, f"{receiver.url}/down", ["POLICY_PUBLISHED"])
        await publish_policy(local_client, token)
        receiver.always = 500
        await deliver_all(database)

        async with database.transaction() as session:
            assert await webhooks_resolver.prune_delivered(session, utcnow()) == 0
        async with database.transaction() as session:
            later = utcnow() + webhooks_resolver.EVENTS_KEPT + timedelta(days=1)
            pruned = await webhooks_resolver.prune_delivered(session, later)
        async with database.session() as session:
            kept = list(await session.scalars(select(WebhookEvent.type)))
        assert pruned > 0
        assert [kind.value for kind in kept] == ["policy.published"]  # still being retried


class TestTls:
    @pytest.mark.parametrize("certified", ["localhost", "someone-else.example"])
    async def test_the_certificate_is_checked_for_the_host_in_the_url(
        self, local_client, database, certified
    ) -> None:
        authority = trustme.CA()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert(certified).configure_cert(tls)
        receiver = Receiver(tls)
        receiver.thread.start()
        try:
            token = await officer(local_client, database)
            port = receiver.server.server_address[1]
            hook = await created(local_client, token, f"https://localhost:{port}/hook")
            trusting = ssl.create_default_context()
            authority.configure_trust(trusting)
            delivery = Delivery(
                https_only=True,
                allow_private=True,
                disable_after=timedelta(hours=24),
                sealer=SEALER,
                trusted=trusting,
            )
            await signed_up(local_client)
            await deliver_all(database, delivery)
        finally:
            receiver.server.shutdown()
            receiver.server.server_close()

        # The newest attempted: after a few failures the circuit opened and the rest wait.
        entry = next(e for e in log_of((await webhooks(local_client, token))[0]) if e["attempts"])
        if certified == "localhost":
            assert entry["status"] == "DELIVERED"
            assert verified(hook["secret"], receiver)
            assert {
                v for _, h, _ in receiver.received for k, v in h.items() if k.lower() == "host"
            } == {f"localhost:{port}"}
        else:
            assert receiver.received == []
            assert entry["status"] == "PENDING"
            assert "CERTIFICATE_VERIFY_FAILED" in entry["lastError"]


class TestWorkerMetrics:
    """What an operator's alerts watch at /metrics: events waiting for the webhook worker, how
    long the oldest has, deliveries failing, and endpoints disabled."""

    async def test_waiting_failing_and_disabled_show_in_a_scrape(
        self, local_client, database, receiver
    ) -> None:
        token = await officer(local_client, database)
        await created(local_client, token, receiver.url, ["CONSENT_CHANGED"])
        nothing = scrape(await local_client.get("/metrics"))
        assert value(nothing, "privacy_api_webhook_undelivered") == 0
        assert value(nothing, "privacy_api_webhook_oldest_undelivered_age_seconds") == 0

        await signed_up(local_client)  # consent events, not yet fanned out: the worker is behind
        waiting = scrape(await local_client.get("/metrics"))
        undelivered = value(waiting, "privacy_api_webhook_undelivered")
        assert undelivered >= 1
        assert value(waiting, "privacy_api_webhook_oldest_undelivered_age_seconds") >= 0
        assert value(waiting, "privacy_api_webhook_failing_deliveries") == 0

        receiver.always = 500
        start = utcnow()
        await deliver_all(database, LOCAL, now=start)
        failing = scrape(await local_client.get("/metrics"))
        assert value(failing, "privacy_api_webhook_undelivered") == undelivered
        # Those tried before the circuit breaker paused the endpoint; the rest wait untried.
        assert 0 < value(failing, "privacy_api_webhook_failing_deliveries") <= undelivered
        assert value(failing, "privacy_api_webhook_disabled_endpoints") == 0

        await deliver_all(database, LOCAL, now=start + timedelta(hours=24, minutes=1))
        disabled = scrape(await local_client.get("/metrics"))
        assert value(disabled, "privacy_api_webhook_disabled_endpoints") == 1
        # What waits for a disabled endpoint waits for an officer, not for the worker.
        assert value(disabled, "privacy_api_webhook_undelivered") == 0
        assert value(disabled, "privacy_api_webhook_failing_deliveries") == 0
