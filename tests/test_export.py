"""Data portability: asking for an export, downloading it once, what it holds, and that a long
history streams in bounded memory."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import tempfile
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
from sqlalchemy import func, insert, select, update

from auth.tokens import hash_token
from models import (
    Account,
    ConsentActor,
    ConsentEvent,
    Database,
    DataExport,
    Notification,
    NotificationKind,
    PrivacyRequest,
    ProfileChange,
    RequestKind,
    RequestStatus,
    Source,
    utcnow,
)
from resolvers import catalogue, export
from resolvers.requests import add_months
from tests.conftest import SEED_POLICY_VERSION, make_config
from tests.helpers import PASSWORD, codes, gql, signed_up
from tests.test_deletion import CHANGE_EMAIL, CONFIRM_EMAIL
from web.app import create_app

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((PROJECT_ROOT / "docs" / "export-schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
SIGNUP_EVENTS = 1 + len(catalogue.CATALOGUE)  # the policy, then every default

REQUEST_EXPORT = """
mutation { requestDataExport { url expiresAt errors { field message code } } }
"""
TOGGLE = """
mutation Toggle($channel: Channel!, $topic: Topic!, $enabled: Boolean!) {
  setCommunicationPreference(input: {channel: $channel, topic: $topic, enabled: $enabled}) {
    errors { code }
  }
}
"""
SHARE = """
mutation Share($purpose: Purpose!, $enabled: Boolean!) {
  setDataSharing(input: {purpose: $purpose, enabled: $enabled}) { errors { code } }
}
"""
VISIBILITY = """
mutation { updateVisibility(input: {profile: MEMBERS, email: MEMBERS}) { errors { code } } }
"""
COOKIES = """
mutation { setCookieConsent(input: {analytics: true}) { errors { code } } }
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


def path_of(url: str) -> str:
    return urlsplit(url).path


async def download(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """Ask for an export, download it, and check it against the published JSON Schema."""
    response = await client.get(path_of(await export_url(client, token)))
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    VALIDATOR.validate(document)
    return document


async def account_id_of(database: Database, email: str) -> uuid.UUID:
    async with database.session() as session:
        return (await session.scalars(select(Account.id).where(Account.email == email))).one()


def documented_hash(event: dict[str, Any]) -> str:
    """The hash as the schema tells a reader to compute it, independently of the API's code."""
    fields = [
        event[name]
        for name in (
            "seq",
            "key",
            "old_value",
            "new_value",
            "actor",
            "actor_id",
            "source",
            "policy_version",
            "occurred_at",
            "request_id",
        )
    ]
    if event["hash_version"] == 2:
        fields += [
            event[name]
            for name in ("accepted_policy_version", "session_id", "user_agent", "hash_version")
        ]
    text = (event["prev_hash"] or "") + "|" + json.dumps(fields, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class TestTheFormat:
    def test_the_schema_is_valid_draft_2020_12(self) -> None:
        jsonschema.Draft202012Validator.check_schema(SCHEMA)

    def test_the_schema_and_the_code_name_the_same_version(self) -> None:
        assert SCHEMA["properties"]["format"]["const"] == export.FORMAT
        assert SCHEMA["properties"]["version"]["const"] == export.FORMAT_VERSION


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
        assert request.due_at == add_months(request.created_at, 1)


class TestDownloadExport:
    async def test_unknown_token_is_404(self, client) -> None:
        response = await client.get("/exports/no-such-token-at-all-0123456789abcdefghijklm")

        assert response.status_code == 404
        assert response.headers["cache-control"] == "no-store"

    async def test_tampered_token_is_404_and_leaves_the_real_one_usable(self, client) -> None:
        token = await signed_up(client)
        path = path_of(await export_url(client, token))
        tampered = path[:-1] + ("A" if path[-1] != "A" else "B")

        assert (await client.get(tampered)).status_code == 404
        assert (await client.get(path + "x")).status_code == 404
        assert (await client.get(path)).status_code == 200

    async def test_a_second_download_is_gone(self, client) -> None:
        token = await signed_up(client)
        path = path_of(await export_url(client, token))

        first = await client.get(path)
        second = await client.get(path)

        assert first.status_code == 200
        assert second.status_code == 410
        assert "already been used" in second.text
        assert "requestDataExport" in second.text

    async def test_two_downloads_at_once_succeed_only_once(self, client, database) -> None:
        token = await signed_up(client)
        path = path_of(await export_url(client, token))

        responses = await asyncio.gather(client.get(path), client.get(path), client.get(path))

        assert sorted(r.status_code for r in responses) == [200, 410, 410]
        winner = next(r for r in responses if r.status_code == 200)
        assert winner.json()["format"] == export.FORMAT

    async def test_an_expired_link_is_gone(self, client, database) -> None:
        token = await signed_up(client)
        path = path_of(await export_url(client, token))
        async with database.session() as session:
            await session.execute(
                update(DataExport).values(expires_at=utcnow() - timedelta(minutes=1))
            )
            await session.commit()

        response = await client.get(path)

        assert response.status_code == 410
        assert "expired" in response.text
        async with database.session() as session:
            assert (await session.scalars(select(DataExport))).one().downloaded_at is None

    async def test_head_does_not_use_the_link_up(self, client) -> None:
        token = await signed_up(client)
        path = path_of(await export_url(client, token))

        assert (await client.head(path)).status_code == 200
        assert (await client.get(path)).status_code == 200
        assert (await client.head(path)).status_code == 410

    async def test_needs_no_sign_in_and_is_a_private_attachment(self, client, database) -> None:
        token = await signed_up(client)
        path = path_of(await export_url(client, token))

        response = await client.get(path)  # no bearer token, no cookie

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        generated = response.json()["generated_at"][:10]
        assert response.headers["content-disposition"] == (
            f'attachment; filename="privacy-export-{generated}.json"'
        )
        async with database.session() as session:
            assert (await session.scalars(select(DataExport))).one().downloaded_at is not None


class TestExportContent:
    async def test_holds_what_was_set_and_the_history_of_it(self, client, database) -> None:
        token = await signed_up(client, phone="+447400123456")
        changes = [
            (TOGGLE, {"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": True}),
            (TOGGLE, {"channel": "SMS", "topic": "SERVICE_UPDATES", "enabled": True}),
            (SHARE, {"purpose": "RESEARCH", "enabled": True}),
            (VISIBILITY, {}),
            (COOKIES, {}),
            (TOGGLE, {"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": False}),
        ]
        for query, variables in changes:
            body = await gql(client, query, variables, token=token)
            assert next(iter(body["data"].values()))["errors"] == [], body

        document = await download(client, token)

        assert document["format"] == "privacy-settings-export"
        assert document["version"] == export.FORMAT_VERSION
        profile = document["profile"]
        assert profile["id"] == str(await account_id_of(database, "ada@example.com"))
        assert (profile["email"], profile["display_name"]) == ("ada@example.com", "Ada Lovelace")
        assert (profile["phone"], profile["birth_date"]) == ("+447400123456", "1990-12-10")
        assert (profile["country"], profile["role"]) == ("GB", "user")
        assert profile["accepted_policy_version"] == SEED_POLICY_VERSION
        assert profile["pending_email"] is None

        settings = {s["key"]: s for s in document["settings"]}
        assert list(settings) == [s.key for s in catalogue.CATALOGUE]
        assert settings["communication.email.newsletter"]["value"] is False
        assert settings["communication.sms.service_updates"]["value"] is True
        assert settings["data_sharing.research"]["value"] is True
        assert settings["visibility.profile"]["value"] == "MEMBERS"
        assert settings["visibility.email"]["value"] == "MEMBERS"
        assert settings["visibility.phone"]["value"] == "PRIVATE"
        assert settings["cookies.analytics"]["value"] is True
        assert settings["cookies.advertising"]["value"] is False
        assert settings["communication.email.security_alerts"]["value"] is True
        for setting in catalogue.CATALOGUE:
            exported = settings[setting.key]
            assert exported["group"] == setting.group.value
            assert exported["legal_basis"] == setting.legal_basis.value
            assert exported["description"] == setting.description

        history = document["consent_history"]
        assert [event["seq"] for event in history] == list(range(1, len(history) + 1))
        assert history[0]["key"] == "policy" and history[0]["actor"] == "signup"
        changed = [(e["key"], e["old_value"], e["new_value"]) for e in history[SIGNUP_EVENTS:]]
        assert changed == [
            ("communication.email.newsletter", "false", "true"),
            ("communication.sms.service_updates", "false", "true"),
            ("data_sharing.research", "false", "true"),
            ("visibility.profile", "PRIVATE", "MEMBERS"),
            ("visibility.email", "PRIVATE", "MEMBERS"),
            ("cookies.analytics", "false", "true"),
            ("communication.email.newsletter", "true", "false"),
        ]
        assert {(e["actor"], e["source"]) for e in history[SIGNUP_EVENTS:]} == {("person", "api")}
        # Who accepted what, through which session: recorded with each event and covered by
        # its hash (format 2).
        assert {e["hash_version"] for e in history} == {2}
        assert {e["accepted_policy_version"] for e in history} == {SEED_POLICY_VERSION}
        assert len({e["session_id"] for e in history}) == 1 and history[0]["session_id"]
        for before, event in zip([None, *history], history, strict=False):
            assert event["prev_hash"] == (before["hash"] if before else None)
            assert event["hash"] == documented_hash(event)
        async with database.session() as session:
            stored = list(await session.scalars(select(ConsentEvent).order_by(ConsentEvent.seq)))
        assert [(e.id, e.hash) for e in stored] == [(e["id"], e["hash"]) for e in history]

        assert document["policy_acceptances"] == [
            {
                "version": SEED_POLICY_VERSION,
                "previous_version": None,
                "accepted_at": history[0]["occurred_at"],
                "source": "signup",
            }
        ]

    async def test_marks_a_setting_switched_on_against_the_gpc_signal(self, client) -> None:
        token = await signed_up(client)
        await gql(client, "{ me { id } }", token=token, headers={"Sec-GPC": "1"})
        advertise = "mutation { setCookieConsent(input: {advertising: true}) { errors { code } } }"
        await gql(client, advertise, token=token)

        document = await download(client, token)

        settings = {s["key"]: s for s in document["settings"]}
        advertising = settings["cookies.advertising"]
        assert advertising["value"] is True
        assert advertising["gpc_conflict_at"] == advertising["updated_at"] is not None
        assert settings["cookies.analytics"]["gpc_conflict_at"] is None
        assert document["profile"]["gpc_applied_at"] is not None

    async def test_includes_this_export_as_a_privacy_request(self, client) -> None:
        token = await signed_up(client)

        document = await download(client, token)

        [request] = document["privacy_requests"]
        assert (request["kind"], request["status"]) == ("export", "completed")
        assert request["handled_at"] is not None

    async def test_sessions_are_listed_without_their_tokens(self, client) -> None:
        token = await signed_up(client)
        response = await client.get(path_of(await export_url(client, token)))
        document = response.json()

        [session] = document["sessions"]
        assert session["user_agent"].startswith("python-httpx")
        assert set(session) == {"user_agent", "created_at", "last_used_at", "expires_at"}
        assert token not in response.text
        assert hash_token(token) not in response.text

    async def test_lists_profile_changes_without_values(self, client, database) -> None:
        token = await signed_up(client)
        account_id = await account_id_of(database, "ada@example.com")
        now = utcnow()
        async with database.session() as session:
            session.add_all(
                [
                    ProfileChange(account_id=account_id, field="display_name", changed_at=now),
                    ProfileChange(
                        account_id=account_id,
                        field="phone",
                        changed_at=now + timedelta(seconds=1),
                        changed_by=uuid.uuid4(),
                    ),
                ]
            )
            await session.commit()

        document = await download(client, token)

        assert [(c["field"], c["by_staff"]) for c in document["profile_changes"]] == [
            ("display_name", False),
            ("phone", True),
        ]

    async def test_lists_the_addresses_the_account_changed_from(self, client, database) -> None:
        token = await signed_up(client)
        move = {"input": {"newEmail": "ada.new@example.com", "currentPassword": PASSWORD}}
        changed = await gql(client, CHANGE_EMAIL, move, token=token)
        assert changed["data"]["requestEmailChange"]["errors"] == []
        async with database.session() as session:
            code = await session.scalar(
                select(Notification.secret).where(
                    Notification.kind == NotificationKind.EMAIL_CONFIRMATION
                )
            )
        confirmed = await gql(client, CONFIRM_EMAIL, {"token": code})
        assert confirmed["data"]["confirmEmailChange"]["errors"] == []

        document = await download(client, token)

        assert document["profile"]["email"] == "ada.new@example.com"
        [former] = document["former_emails"]
        assert former["email"] == "ada@example.com" and former["replaced_at"]

    async def test_holds_nothing_of_another_account(self, client, database) -> None:
        ada = await signed_up(client)
        bob = await signed_up(
            client, email="bob@example.com", displayName="Bob Marley", phone="+447400999888"
        )
        await gql(
            client, TOGGLE, {"channel": "PUSH", "topic": "MARKETING", "enabled": True}, token=bob
        )
        await export_url(client, bob)
        bob_id = await account_id_of(database, "bob@example.com")
        async with database.session() as session:
            bob_hashes = set(
                await session.scalars(
                    select(ConsentEvent.hash).where(ConsentEvent.account_id == bob_id)
                )
            )
            session.add(ProfileChange(account_id=bob_id, field="email", changed_at=utcnow()))
            await session.commit()

        response = await client.get(path_of(await export_url(client, ada)))
        document = response.json()

        for trace in ("bob", "Bob", "+447400999888", str(bob_id)):
            assert trace not in response.text
        assert not bob_hashes & {event["hash"] for event in document["consent_history"]}
        assert len(document["consent_history"]) == SIGNUP_EVENTS
        assert len(document["sessions"]) == len(document["privacy_requests"]) == 1
        assert document["profile_changes"] == document["former_emails"] == []


async def _download_to(app: Any, path: str, target: Any) -> tuple[int, dict[bytes, bytes]]:
    """GET through the app's ASGI interface, writing the body to `target` as it arrives.

    httpx's ASGI transport collects the whole body before answering, which would hide whether
    the server streams; this sink keeps nothing.
    """
    started: dict[str, Any] = {}
    done = asyncio.Event()
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            target.write(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return started["status"], dict(started["headers"])


async def _peak_memory_of(work: Any) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    try:
        result = await work()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_long_history_streams_in_bounded_memory(client, app, database) -> None:
    """The download's peak memory stays flat while the history grows fivefold, to 10,000 events,
    and is a fraction of what merely loading those events would take. (`make bench` streams
    100,000 on both databases and prints the server's memory growth; this is the suite's share of
    that proof, kept quick.)

    PostgreSQL only: the export reads both databases through the same code, and production
    accounts with long histories live on PostgreSQL.
    """
    token = await signed_up(client)
    account_id = await account_id_of(database, "ada@example.com")
    now = utcnow()
    written = SIGNUP_EVENTS

    async def add_events(count: int) -> None:
        nonlocal written
        rows = [
            {
                "account_id": account_id,
                "seq": seq,
                "key": "communication.email.newsletter",
                "old_value": "false" if seq % 2 else "true",
                "new_value": "true" if seq % 2 else "false",
                "actor": ConsentActor.PERSON,
                "source": Source.WEB,
                "policy_version": SEED_POLICY_VERSION,
                "occurred_at": now + timedelta(microseconds=seq),
                "request_id": f"request-{seq:08d}",
                "prev_hash": f"{seq - 1:064x}",
                "hash": f"{seq:064x}",
            }
            for seq in range(written + 1, written + 1 + count)
        ]
        async with database.session() as session:
            await session.execute(insert(ConsentEvent), rows)
            await session.commit()
        written += count

    async def download() -> tuple[int, int, dict[str, Any]]:
        """Status, size and the document of a new export, and the download's peak memory."""
        path = path_of(await export_url(client, token))
        with tempfile.TemporaryFile() as body:
            (status, _headers), peak = await _peak_memory_of(lambda: _download_to(app, path, body))
            size = body.tell()
            body.seek(0)
            document = json.load(body)
        assert status == 200
        return peak, size, document

    # A first download, so what is measured is the stream, not what any first request costs
    # (statements compiled and cached, modules loaded).
    await download()
    await add_events(2_000)
    small_peak, small_size, _ = await download()
    await add_events(8_000)
    large_peak, large_size, document = await download()

    async def load_all() -> int:
        async with database.session() as session:
            events = (
                await session.scalars(
                    select(ConsentEvent).where(ConsentEvent.account_id == account_id)
                )
            ).all()
            return len(events)

    loaded, loading_peak = await _peak_memory_of(load_all)
    print(
        f"\n{loaded} events: loading them as ORM objects peaks at {loading_peak / 2**20:.1f} MiB;"
        f" streaming the {large_size / 2**20:.1f} MiB export peaks at {large_peak / 2**20:.1f} MiB,"
        f" and that of {SIGNUP_EVENTS + 2_000} events ({small_size / 2**20:.1f} MiB)"
        f" at {small_peak / 2**20:.1f} MiB"
    )
    history = document["consent_history"]
    assert loaded == len(history) == written
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    document["consent_history"] = history[:5] + history[-5:]
    VALIDATOR.validate(document)
    # Five times the history, four times the bytes: the same memory to send it.
    assert large_size > 4 * small_size
    assert large_peak < 1.5 * small_peak
    assert large_peak < loading_peak / 4
