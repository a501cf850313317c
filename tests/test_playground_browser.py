"""`privacy-api serve` as a newcomer runs it (`make run PORT=...`), and its playground in a real
browser with no way out: Debian's Chromium, driven by Playwright, refused every request to a host
other than the API. It signs in with the demo account `serve` prints, runs `me`, and keeps a
screenshot in artifacts/ for a person to look at."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers import LOGIN
from tests.test_serve import PROJECT_ROOT, REQUEST_EXPORT, Server, serve

CHROMIUM = os.environ.get("PRIVACY_API_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "artifacts"
RESULT = "() => document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
SET_VARIABLES = (
    "(value) => document.querySelector('.graphiql-editor-tool .CodeMirror')"
    ".CodeMirror.setValue(value)"
)

playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Served on a free port, with no public URL set: links must follow the port."""
    yield from serve(tmp_path_factory.mktemp("browser"), PRIVACY_API_PUBLIC_URL="")


def require_chromium() -> None:
    if shutil.which(CHROMIUM) is None:
        message = f"No browser at {CHROMIUM}: `apt-get install chromium` (.ci/run does)."
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


def demo_account(server: Server) -> tuple[str, str]:
    found = re.search(r"Demo account created: email (\S+)\s+password (\S+)", server.output())
    assert found, server.output()
    return found[1], found[2]


def test_links_in_messages_follow_the_port_served(server: Server) -> None:
    email, password = demo_account(server)
    credentials = {"input": {"email": email, "password": password}}
    token = server.graphql(LOGIN, credentials)["data"]["login"]["token"]
    body = server.graphql(REQUEST_EXPORT, Authorization=f"Bearer {token}")
    link = body["data"]["requestDataExport"]["url"]
    assert link.startswith(f"{server.http.base_url}/exports/"), link
    assert server.http.get(link).status_code == 200


def test_the_playground_signs_in_and_reads_me_with_no_other_host(server: Server) -> None:
    require_chromium()
    email, password = demo_account(server)
    api = urlsplit(str(server.http.base_url)).netloc
    elsewhere: list[str] = []

    def only_the_api(route: playwright.Route) -> None:
        if urlsplit(route.request.url).netloc == api:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.route("**/*", only_the_api)
            page.goto(f"{server.http.base_url}/graphql")
            page.wait_for_selector(".graphiql-query-editor .CodeMirror")

            page.evaluate(SET_VARIABLES, json.dumps({"email": email, "password": password}))
            run = page.get_by_label("Execute query (Ctrl-Enter)")
            run.click()
            page.get_by_role("menuitem", name="SignIn", exact=True).click()
            page.wait_for_function(f"() => ({RESULT})().includes('login')")
            assert json.loads(page.evaluate(RESULT))["data"]["login"]["errors"] == []

            run.click()
            page.get_by_role("menuitem", name="Me", exact=True).click()
            page.wait_for_function(f"() => ({RESULT})().includes('displayName')")
            me = json.loads(page.evaluate(RESULT))["data"]["me"]
            assert (me["email"], me["displayName"]) == (email, "Demo Person")
            assert page.get_by_text('"Demo Person"').is_visible()

            assert password not in page.url
            page.evaluate(SET_VARIABLES, "{}")  # the screenshot shows no password
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=Path(ARTIFACTS / "playground.png"))
        finally:
            browser.close()
    assert elsewhere == []
