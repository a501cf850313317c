"""Trusted documents and automatic persisted queries: clients send a document's sha256 instead of
its text; with PRIVACY_API_REGISTERED_DOCUMENTS_ONLY, callers who are not signed in may run
only the documents of the manifest."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from models import Role
from privacy_api.config import Config
from schema.documents import ManifestError, document_id
from tests.conftest import app_for, client_of, make_config
from tests.helpers import (
    ME_SETTINGS,
    change,
    database_behind,
    gql,
    my_settings,
    preference,
    signed_up,
    staff_token,
)
from tests.test_startup import one_line, start

CATALOGUE = "query Catalogue { privacyCatalogue { key group kind } }"
GREETING = "{ __typename }"
TOGGLE = """mutation Toggle($on: Boolean!) { setCommunicationPreference(input:
  {channel: EMAIL, topic: NEWSLETTER, enabled: $on}) { errors { code } } }"""


def persisted(query: str | None, *, hash_of: str | None = None, **variables: Any) -> dict[str, Any]:
    """A request body as Apollo's persisted-queries link sends it: the hash, maybe the text."""
    body: dict[str, Any] = {
        "variables": variables,
        "extensions": {
            "persistedQuery": {"version": 1, "sha256Hash": document_id(hash_of or query or "")}
        },
    }
    if query is not None:
        body["query"] = query
    return body


async def send(
    client: httpx.AsyncClient, body: dict[str, Any], *, token: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def error_code(answer: dict[str, Any]) -> str:
    assert answer.get("data") is None, answer
    code: str = answer["errors"][0]["extensions"]["code"]
    return code


def manifest(folder: Path, *documents: str, apollo: bool = False) -> Path:
    path = folder / "persisted-documents.json"
    if apollo:
        operations = [
            {"id": document_id(text), "name": "", "type": "query", "body": text}
            for text in documents
        ]
        content: object = {
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": operations,
        }
    else:
        content = {document_id(text): text for text in documents}
    path.write_text(json.dumps(content))
    return path


def with_manifest(config: Config, path: Path, **overrides: object) -> Config:
    return make_config(config.database_url, trusted_documents=path, **overrides)


@pytest.fixture
async def registered(config: Config, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A production app whose manifest holds the catalogue and `me`'s settings, and that lets
    callers who are not signed in run only those."""
    path = manifest(tmp_path, CATALOGUE, ME_SETTINGS)
    settings = with_manifest(config, path, environment="production", registered_documents_only=True)
    async with client_of(settings) as http:
        yield http


class TestAutomaticPersistedQueries:
    async def test_an_unknown_hash_is_not_found_until_its_text_is_sent(
        self, client: httpx.AsyncClient
    ) -> None:
        first = await send(client, persisted(None, hash_of=CATALOGUE))
        assert error_code(first) == "PERSISTED_QUERY_NOT_FOUND"
        assert first["errors"][0]["message"] == "PersistedQueryNotFound"

        with_text = await send(client, persisted(CATALOGUE))
        by_hash = await send(client, persisted(None, hash_of=CATALOGUE))

        assert with_text == by_hash == await gql(client, CATALOGUE)
        assert by_hash["data"]["privacyCatalogue"]

    async def test_the_request_line_gives_the_code_of_an_unknown_hash(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="privacy_api.request")

        await send(client, persisted(None, hash_of=CATALOGUE))

        [line] = [r.getMessage() for r in caplog.records if r.name == "privacy_api.request"]
        assert " 200 invalid PERSISTED_QUERY_NOT_FOUND " in line

    async def test_a_hash_that_is_not_the_texts_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        token = await signed_up(client)
        answer = await send(client, persisted(TOGGLE, hash_of=GREETING, on=True), token=token)

        assert error_code(answer) == "PERSISTED_QUERY_HASH_MISMATCH"
        account = await my_settings(client, token)
        assert preference(account, "EMAIL", "NEWSLETTER") is False

    async def test_a_query_by_id_over_get(self, client: httpx.AsyncClient) -> None:
        """Apollo's link sends hashed queries over GET when asked to (useGETForHashedQueries),
        which caches can keep."""
        await send(client, persisted(CATALOGUE))
        extensions = json.dumps(persisted(None, hash_of=CATALOGUE)["extensions"])

        response = await client.get("/graphql", params={"extensions": extensions})

        assert response.status_code == 200
        assert response.json() == await gql(client, CATALOGUE)

    async def test_another_version_of_the_extension_is_refused(
        self, client: httpx.AsyncClient
    ) -> None:
        body = persisted(GREETING)
        body["extensions"]["persistedQuery"]["version"] = 2

        assert error_code(await send(client, body)) == "PERSISTED_QUERY_NOT_SUPPORTED"

    async def test_a_refused_document_answers_400_to_graphql_response_clients(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/graphql",
            json=persisted(None, hash_of=CATALOGUE),
            headers={"Accept": "application/graphql-response+json"},
        )

        assert response.status_code == 400
        assert "data" not in response.json()


class TestManifest:
    async def test_a_manifest_document_runs_by_its_id_from_the_start(
        self, config: Config, tmp_path: Path
    ) -> None:
        async with client_of(with_manifest(config, manifest(tmp_path, CATALOGUE))) as http:
            answer = await send(http, persisted(None, hash_of=CATALOGUE))

            assert answer == await gql(http, CATALOGUE)

    async def test_apollos_manifest_format_is_read(self, config: Config, tmp_path: Path) -> None:
        path = manifest(tmp_path, CATALOGUE, apollo=True)
        async with client_of(with_manifest(config, path)) as http:
            answer = await send(http, persisted(None, hash_of=CATALOGUE))

            assert answer["data"]["privacyCatalogue"]

    async def test_registered_documents_are_parsed_and_validated_once(
        self, config: Config, tmp_path: Path
    ) -> None:
        app = app_for(with_manifest(config, manifest(tmp_path, ME_SETTINGS)))
        view = next(r.app for r in app.routes if isinstance(r, Route) and r.path == "/graphql")
        schema = view.schema
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                token = await signed_up(http)
                await send(http, persisted(None, hash_of=ME_SETTINGS), token=token)
                parsed, validated = schema.parsed.documents.misses, schema.validator.verdicts.misses
                for _ in range(3):
                    answer = await send(http, persisted(None, hash_of=ME_SETTINGS), token=token)
                    assert answer["data"]["me"]["communicationPreferences"]
        finally:
            await app.state.services.database.dispose()

        assert schema.parsed.documents.misses == parsed
        assert schema.validator.verdicts.misses == validated

    async def test_in_production_a_registered_introspection_runs_for_staff_only(
        self, config: Config, tmp_path: Path
    ) -> None:
        introspection = "query Types { __schema { queryType { name } } }"
        path = manifest(tmp_path, introspection)
        async with client_of(with_manifest(config, path, environment="production")) as http:
            staff = await staff_token(
                http, database_behind(http), Role.SUPPORT, "support@example.com"
            )
            by_id = persisted(None, hash_of=introspection)

            assert (await send(http, by_id, token=staff))["data"]["__schema"]["queryType"]
            refused = await send(http, by_id, token=await signed_up(http))
            assert refused["data"] is None
            assert "introspection" in refused["errors"][0]["message"]

    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            ({"0" * 64: GREETING}, "is not the sha256 of its document"),
            ({"abc": GREETING}, "needs a sha256 id"),
            ({document_id("{ nope }"): "{ nope }"}, "cannot run"),
            ([GREETING], "expected a JSON object"),
        ],
    )
    def test_a_manifest_the_api_cannot_trust_stops_the_start(
        self, config: Config, tmp_path: Path, content: object, problem: str
    ) -> None:
        path = tmp_path / "documents.json"
        path.write_text(json.dumps(content))

        with pytest.raises(ManifestError, match=problem):
            app_for(with_manifest(config, path))


class TestRegisteredDocumentsOnly:
    async def test_a_caller_not_signed_in_cannot_run_another_document(
        self, registered: httpx.AsyncClient
    ) -> None:
        assert error_code(await gql(registered, GREETING)) == "DOCUMENT_NOT_REGISTERED"
        sent = await send(registered, persisted(GREETING))
        assert error_code(sent) == "DOCUMENT_NOT_REGISTERED"
        # Sending it with its hash did not register it.
        again = await send(registered, persisted(None, hash_of=GREETING))
        assert error_code(again) == "PERSISTED_QUERY_NOT_FOUND"

    async def test_an_unknown_token_does_not_make_a_caller_signed_in(
        self, registered: httpx.AsyncClient
    ) -> None:
        answer = await gql(registered, GREETING, token="not-a-session")

        assert error_code(answer) == "DOCUMENT_NOT_REGISTERED"

    async def test_a_caller_not_signed_in_runs_registered_documents(
        self, registered: httpx.AsyncClient
    ) -> None:
        by_id = await send(registered, persisted(None, hash_of=CATALOGUE))
        in_full = await gql(registered, CATALOGUE)

        assert by_id == in_full
        assert by_id["data"]["privacyCatalogue"]

    async def test_a_signed_in_person_runs_any_document(
        self, registered: httpx.AsyncClient
    ) -> None:
        token = await signed_up(registered)

        toggled = {"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": True}
        await change(registered, "setCommunicationPreference", toggled, token=token)
        by_id = await send(registered, persisted(None, hash_of=ME_SETTINGS), token=token)

        assert preference(by_id["data"]["me"], "EMAIL", "NEWSLETTER") is True
        assert (await gql(registered, GREETING, token=token))["data"] == {"__typename": "Query"}


class TestServe:
    def test_a_manifest_that_cannot_run_stops_serve_with_one_line(self, tmp_path: Path) -> None:
        path = tmp_path / "documents.json"
        path.write_text(json.dumps({document_id("{ nope }"): "{ nope }"}))

        line = one_line(start(tmp_path, "serve", PRIVACY_API_TRUSTED_DOCUMENTS=str(path)))

        assert line.startswith(f"Configuration error: {path}: document {document_id('{ nope }')}")
        assert "Cannot query field 'nope'" in line

    def test_registered_documents_only_needs_a_manifest(self, tmp_path: Path) -> None:
        line = one_line(start(tmp_path, "serve", PRIVACY_API_REGISTERED_DOCUMENTS_ONLY="1"))

        assert "PRIVACY_API_REGISTERED_DOCUMENTS_ONLY needs PRIVACY_API_TRUSTED_DOCUMENTS" in line
