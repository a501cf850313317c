"""What browsers, proxies and CDNs are told about keeping an answer: nothing personal is stored
by a cache, production pins HTTPS, and the server does not name its software."""

from __future__ import annotations

import httpx

from tests.helpers import new_account, post, signed_up_through_the_api

ME = "{ me { email } }"
REQUEST_EXPORT = "mutation { requestDataExport { url errors { code } } }"


class TestNoStore:
    async def test_me_by_bearer_token(self, client: httpx.AsyncClient) -> None:
        _, token = await new_account(client)
        response = await post(client, ME, token=token)
        assert response.json()["data"]["me"]["email"]
        assert response.headers["cache-control"] == "no-store"

    async def test_me_over_get_by_cookie(self, client: httpx.AsyncClient) -> None:
        """urql's default: a query over GET, which a browser or proxy could otherwise keep."""
        await signed_up_through_the_api(client)
        response = await client.get(
            "/graphql", params={"query": ME}, headers={"X-Requested-With": "fetch"}
        )
        assert response.json()["data"]["me"]["email"]
        assert response.headers["cache-control"] == "no-store"

    async def test_an_export_link_and_its_download(self, client: httpx.AsyncClient) -> None:
        _, token = await new_account(client)
        asked = await post(client, REQUEST_EXPORT, token=token)
        assert asked.headers["cache-control"] == "no-store"
        url = httpx.URL(asked.json()["data"]["requestDataExport"]["url"])
        download = await client.get(url.path)
        assert download.status_code == 200
        assert download.headers["cache-control"] == "no-store"

    async def test_a_signed_out_answer_too(self, client: httpx.AsyncClient) -> None:
        """What a GraphQL answer holds depends on who asks (a device's cookie choices, a
        signup's refusal): none is kept."""
        response = await client.get("/graphql", params={"query": "{ currentPolicy { version } }"})
        assert response.headers["cache-control"] == "no-store"

    async def test_the_playground_page(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/graphql", headers={"Accept": "text/html"})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"


class TestStrictTransportSecurity:
    async def test_production_pins_https(self, production_client: httpx.AsyncClient) -> None:
        for path in ("/healthz", "/graphql?query=%7B__typename%7D"):
            response = await production_client.get(path)
            hsts = response.headers["strict-transport-security"]
            assert hsts == "max-age=63072000; includeSubDomains"

    async def test_development_over_plain_http_does_not(self, client: httpx.AsyncClient) -> None:
        """A developer's http://127.0.0.1 must not be pinned to HTTPS for two years."""
        response = await client.get("/healthz")
        assert "strict-transport-security" not in response.headers
