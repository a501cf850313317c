"""The GraphiQL playground: its files come from the API itself, it opens with our example, and in
production it and introspection are for signed-in staff only.

The browser itself drives the page in tests/test_playground_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from auth.tokens import SESSION_COOKIE
from models import Database, Role
from resolvers.account import create_staff
from schema import build_schema
from tests.helpers import LOGIN, PASSWORD, gql, signed_up
from web.playground import ASSET_DIR, EXAMPLE_DOCUMENT, assets, missing_assets
from web.routes import PLAYGROUND_ASSETS

HTML = {"Accept": "text/html"}
INTROSPECTION = "{ __schema { queryType { name } } }"
PAGE_LINKS = re.compile(r'(?:src|href)="([^"]+)"')


def by_cookie(token: str) -> dict[str, str]:
    """The session cookie as a browser sends it (production cookies are Secure, and the test
    client, on http://, would hold them back)."""
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


async def signed_in_staff(client: httpx.AsyncClient, database: Database, role: Role) -> str:
    """Sign a new staff member in; their session token."""
    async with database.transaction() as session:
        await create_staff(
            session, email="officer@example.com", password=PASSWORD, display_name="O", role=role
        )
    body = await gql(
        client, LOGIN, {"input": {"email": "officer@example.com", "password": PASSWORD}}
    )
    assert body["data"]["login"]["errors"] == []
    token: str = body["data"]["login"]["token"]
    return token


def is_playground(response: httpx.Response) -> bool:
    return response.status_code == 200 and "GraphiQL" in response.text


def introspection_refused(body: dict[str, object]) -> bool:
    errors = body.get("errors") or []
    return body.get("data") is None and any(
        "introspection" in str(error).lower()
        for error in errors  # type: ignore[attr-defined]
    )


class TestDevelopment:
    async def test_every_file_of_the_page_is_served_by_the_api(
        self, client: httpx.AsyncClient
    ) -> None:
        page = await client.get("/graphql", headers=HTML)
        assert is_playground(page)
        links = [link for link in PAGE_LINKS.findall(page.text) if not link.startswith("data:")]
        # Every script and stylesheet strawberry's page names, none from another host, each the
        # very bytes the page's integrity hash expects (or the browser would refuse it).
        expected = {f"{PLAYGROUND_ASSETS}/{asset.local_path}": asset for asset in assets()}
        assert sorted(links) == sorted(expected)
        for link, asset in expected.items():
            served = await client.get(link)
            assert served.status_code == 200, link
            assert asset.integrity is not None
            algorithm, _, digest = asset.integrity.partition("-")
            assert base64.b64encode(hashlib.new(algorithm, served.content).digest()).decode() == (
                digest
            ), link

    async def test_it_opens_with_our_example_and_keeps_variables_out_of_the_address(
        self, client: httpx.AsyncClient
    ) -> None:
        page = (await client.get("/graphql", headers=HTML)).text
        assert "mutation SignIn($email: String!, $password: String!)" in EXAMPLE_DOCUMENT
        assert "mutation SignIn(" in page and "ToggleNewsletter" in page
        assert "Welcome to GraphiQL" not in page
        assert "updateURL({ variables" not in page

    async def test_the_example_runs(self, client: httpx.AsyncClient) -> None:
        await signed_up(client, email="example@example.com")
        client.cookies.clear()
        for operation, variables in (
            ("SignIn", {"email": "example@example.com", "password": PASSWORD}),
            ("Me", {}),
            ("ToggleNewsletter", {}),
        ):
            response = await client.post(
                "/graphql",
                json={
                    "query": EXAMPLE_DOCUMENT,
                    "operationName": operation,
                    "variables": variables,
                },
            )
            body = response.json()
            assert "errors" not in body, body
        me = body["data"]["setCommunicationPreference"]["account"]
        newsletter = [
            preference
            for preference in me["communicationPreferences"]
            if (preference["channel"], preference["topic"]) == ("EMAIL", "NEWSLETTER")
        ]
        assert newsletter == [{"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": True}]


def test_a_file_that_is_not_the_expected_bytes_counts_as_missing(tmp_path: Path) -> None:
    assert missing_assets(tmp_path) == assets()
    for asset in assets():
        copy = tmp_path / asset.local_path
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes((ASSET_DIR / asset.local_path).read_bytes())
    assert missing_assets(tmp_path) == []
    tampered = tmp_path / assets()[0].local_path
    tampered.write_bytes(tampered.read_bytes() + b"\n")
    assert missing_assets(tmp_path) == [assets()[0]]


async def test_staff_and_everyone_else_keep_their_own_validation_cache() -> None:
    schema = build_schema(production=True)
    staff, anyone = SimpleNamespace(caller_is_staff=True), SimpleNamespace(caller_is_staff=False)
    for _ in range(2):
        refused = await schema.execute(INTROSPECTION, context_value=anyone)
        answered = await schema.execute(INTROSPECTION, context_value=staff)
        assert refused.errors and "introspection" in refused.errors[0].message.lower()
        assert answered.errors is None
    # One entry each, found again the second time.
    assert (schema.validator.verdicts.misses, schema.validator.verdicts.hits) == (1, 1)
    assert (schema.staff_validator.verdicts.misses, schema.staff_validator.verdicts.hits) == (1, 1)


class TestProduction:
    async def test_anonymous_gets_the_staff_sign_in_and_no_introspection(
        self, production_client: httpx.AsyncClient
    ) -> None:
        page = await production_client.get("/graphql", headers=HTML)
        assert page.status_code == 401
        assert "Staff sign-in" in page.text and "GraphiQL" not in page.text
        assert introspection_refused(await gql(production_client, INTROSPECTION))

    async def test_a_signed_in_person_who_is_not_staff_gets_neither(
        self, production_client: httpx.AsyncClient
    ) -> None:
        cookie = by_cookie(await signed_up(production_client))
        page = await production_client.get("/graphql", headers={**HTML, **cookie})
        assert page.status_code == 403
        assert "not a staff account" in page.text and "GraphiQL" not in page.text
        assert introspection_refused(await gql(production_client, INTROSPECTION, headers=cookie))

    @pytest.mark.parametrize("role", [Role.SUPPORT, Role.PRIVACY_OFFICER])
    async def test_staff_get_the_playground_and_introspection(
        self, production_client: httpx.AsyncClient, database: Database, role: Role
    ) -> None:
        # Asked first by someone else: the refusal must not be served to staff from the cache.
        assert introspection_refused(await gql(production_client, INTROSPECTION))
        cookie = by_cookie(await signed_in_staff(production_client, database, role))
        page = await production_client.get("/graphql", headers={**HTML, **cookie})
        assert is_playground(page)
        for _ in range(2):
            answered = await gql(production_client, INTROSPECTION, headers=cookie)
            assert answered["data"] == {"__schema": {"queryType": {"name": "Query"}}}
        # ... nor the staff's answer to anyone else.
        assert introspection_refused(await gql(production_client, INTROSPECTION))


def only_its_own_scripts_run(response: httpx.Response) -> None:
    """The page's Content-Security-Policy lets exactly its inline scripts run (by hash), files
    from the API itself, and nothing inline that was not there when it was served."""
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    scripts = policy["script-src"].split()
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert inline
    hashes = {base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in inline}
    assert set(scripts) == {"'self'"} | {f"'sha256-{digest}'" for digest in hashes}
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"


class TestContentSecurityPolicy:
    async def test_the_playground(self, client: httpx.AsyncClient) -> None:
        page = await client.get("/graphql", headers=HTML)
        assert is_playground(page)
        only_its_own_scripts_run(page)

    async def test_the_staff_sign_in(self, production_client: httpx.AsyncClient) -> None:
        page = await production_client.get("/graphql", headers=HTML)
        assert page.status_code == 401 and "Staff sign-in" in page.text
        only_its_own_scripts_run(page)
