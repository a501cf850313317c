"""A web frontend on another origin, as a browser lets it call the API, and the origins an
operator may configure for it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from privacy_api.config import ConfigError, load_config
from tests.conftest import FRONTEND
from tests.helpers import events, settings_mutation, signed_up_through_the_api

# What a web frontend sets itself; Cookie, User-Agent and Sec-GPC are the browser's to send.
FRONTEND_HEADERS = [
    "content-type",
    "x-client-source",
    "x-device-id",
    "x-request-id",
    "x-requested-with",
]


def _listed(response: httpx.Response, name: str) -> set[str]:
    return {item.strip().lower() for item in response.headers.get(name, "").split(",")}


def browser_refusals(response: httpx.Response, method: str, headers: list[str]) -> list[str]:
    """What a browser would hold against a preflight answer for a request with credentials
    (the CORS check of the Fetch standard); empty when it goes on to send the request."""
    refusals = []
    if not 200 <= response.status_code < 300:
        refusals.append(f"status {response.status_code}")
    if response.headers.get("access-control-allow-origin") != FRONTEND:
        refusals.append("origin not echoed")
    if response.headers.get("access-control-allow-credentials") != "true":
        refusals.append("credentials not allowed")
    if method not in _listed(response, "access-control-allow-methods") | {"get", "head"}:
        refusals.append(f"method {method}")
    allowed = _listed(response, "access-control-allow-headers")
    refusals += [f"header {header}" for header in headers if header not in allowed]
    return refusals


class TestPreflight:
    async def test_the_client_source_header_may_be_sent(self, frontend: httpx.AsyncClient) -> None:
        response = await frontend.options(
            "/graphql",
            headers={
                "Origin": FRONTEND,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-client-source",
            },
        )
        assert browser_refusals(response, "post", ["x-client-source"]) == []

    async def test_every_header_a_frontend_sets_may_be_sent(
        self, frontend: httpx.AsyncClient
    ) -> None:
        response = await frontend.options(
            "/graphql",
            headers={
                "Origin": FRONTEND,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": ",".join([*FRONTEND_HEADERS, "authorization"]),
            },
        )
        assert browser_refusals(response, "post", [*FRONTEND_HEADERS, "authorization"]) == []

    async def test_another_origin_is_refused(self, frontend: httpx.AsyncClient) -> None:
        response = await frontend.options(
            "/graphql",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert "access-control-allow-origin" not in response.headers


class TestCredentialedRequest:
    async def test_a_cookie_session_from_the_frontend_is_answered_and_its_source_kept(
        self, frontend: httpx.AsyncClient
    ) -> None:
        token = await signed_up_through_the_api(frontend)  # also sets the session cookie
        response = await frontend.post(
            "/graphql",
            json={
                "query": settings_mutation("setDataSharing"),
                "variables": {"input": {"purpose": "RESEARCH", "enabled": True}},
            },
            headers={"Origin": FRONTEND, "X-Client-Source": "mobile"},
        )
        assert response.headers["access-control-allow-origin"] == FRONTEND
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "x-request-id" in _listed(response, "access-control-expose-headers")
        for refusal_header in ("retry-after", "ratelimit", "ratelimit-policy"):
            assert refusal_header in _listed(response, "access-control-expose-headers")
        assert response.json()["data"]["setDataSharing"]["errors"] == []
        [newest, *_] = await events(frontend, token)
        assert (newest["key"], newest["source"]) == ("data_sharing.research", "MOBILE")


class TestConfiguredOrigins:
    def load(self, tmp_path: Path, origins: str) -> tuple[str, ...]:
        env = {"PRIVACY_API_DATA_DIR": str(tmp_path), "PRIVACY_API_ALLOWED_ORIGINS": origins}
        return load_config(env).allowed_origins

    @pytest.mark.parametrize(
        "origin",
        [
            "*",
            "https://*.example.com",
            "null",
            "cms.example",
            "https://cms.example/app",
            "https://cms.example/?a=1",
            "https://cms.example#top",
            "https://user@cms.example",
            "ftp://cms.example",
            "https://cms.example:99999",
            "https://[::1",
            "https://cms..example",
            "https://",
        ],
    )
    def test_what_is_not_one_origin_is_refused_by_name(self, tmp_path: Path, origin: str) -> None:
        with pytest.raises(ConfigError) as refused:
            self.load(tmp_path, f"https://cms.example, {origin}")
        message = str(refused.value)
        assert "PRIVACY_API_ALLOWED_ORIGINS" in message and repr(origin) in message
        assert "\n" not in message

    def test_origins_are_written_as_a_browser_sends_them(self, tmp_path: Path) -> None:
        given = "https://CMS.Example/, http://localhost:3000, https://app.example:443, ,"
        assert self.load(tmp_path, given) == (
            "https://cms.example",
            "http://localhost:3000",
            "https://app.example",
        )
