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
from urllib.parse import quote, urlencode, urlsplit

import pytest

from tests.helpers import LOGIN
from tests.test_serve import PROJECT_ROOT, REQUEST_EXPORT, Server, serve

CHROMIUM = os.environ.get("PRIVACY_API_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "artifacts"
RESULT = "() => document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
VARIABLES = (
    "() => document.querySelectorAll('.graphiql-editor-tool .CodeMirror')[0].CodeMirror.getValue()"
)
HEADERS = (
    "() => document.querySelectorAll('.graphiql-editor-tool .CodeMirror')[1].CodeMirror.getValue()"
)
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


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright.Browser]:
    require_chromium()
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class Playground:
    """One browser tab on the playground, refused every host but the API's, noting what the
    browser blocked under the page's Content-Security-Policy."""

    def __init__(self, browser: playwright.Browser, server: Server) -> None:
        self.server = server
        self.context = browser.new_context(viewport={"width": 1600, "height": 900})
        self.page = self.context.new_page()
        self.elsewhere: list[str] = []
        self.blocked: list[str] = []
        api = urlsplit(str(server.http.base_url)).netloc

        def only_the_api(route: playwright.Route) -> None:
            if urlsplit(route.request.url).netloc == api:
                route.continue_()
            else:
                self.elsewhere.append(route.request.url)
                route.abort()

        def note_blocked(message: playwright.ConsoleMessage) -> None:
            if "Content Security Policy" in message.text:
                self.blocked.append(message.text)

        self.page.route("**/*", only_the_api)
        self.page.on("console", note_blocked)

    def open(self, address: str = "/graphql") -> None:
        self.page.goto(f"{self.server.http.base_url}{address}")
        self.page.wait_for_selector(".graphiql-query-editor .CodeMirror")

    def run(self, operation: str, expected: str) -> dict[str, object]:
        """Run one operation of the document by its name; its answer, once it shows
        `expected`."""
        self.page.get_by_label("Execute query (Ctrl-Enter)").click()
        self.page.get_by_role("menuitem", name=operation, exact=True).click()
        self.page.wait_for_function(f"() => ({RESULT})().includes({json.dumps(expected)})")
        answer: dict[str, object] = json.loads(self.page.evaluate(RESULT))
        return answer

    def stored(self) -> str:
        """Everything the page keeps in the browser's storage."""
        return str(
            self.page.evaluate(
                "() => JSON.stringify([Object.entries(localStorage), "
                "Object.entries(sessionStorage)])"
            )
        )

    def close(self) -> None:
        self.context.close()


def test_the_playground_signs_in_and_reads_me_with_no_other_host(
    server: Server, browser: playwright.Browser
) -> None:
    email, password = demo_account(server)
    tab = Playground(browser, server)
    try:
        tab.open()
        page = tab.page
        page.evaluate(SET_VARIABLES, json.dumps({"email": email, "password": password}))
        login = tab.run("SignIn", "login")
        assert login["data"]["login"]["errors"] == []  # type: ignore[index]

        me = tab.run("Me", "displayName")["data"]["me"]  # type: ignore[index]
        assert (me["email"], me["displayName"]) == (email, "Demo Person")
        assert page.get_by_text('"Demo Person"').is_visible()

        assert password not in page.url
        # Nothing of the variables (the password) or the answers is kept in the browser's
        # storage, where any script of the origin, or the next person at the machine, reads it.
        stored = tab.stored()
        assert password not in stored and email not in stored, stored
        tab.open()
        assert password not in page.evaluate(VARIABLES)
        assert tab.blocked == []  # the page works under its own Content-Security-Policy

        page.evaluate(SET_VARIABLES, "{}")  # the screenshot shows no password
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=Path(ARTIFACTS / "playground.png"))
    finally:
        tab.close()
    assert tab.elsewhere == []


def test_headers_in_the_address_are_ignored(server: Server, browser: playwright.Browser) -> None:
    """A link to the playground with `?headers=` naming someone else's session (the sender's)
    would sign the visitor in as them (login CSRF): what they then type lands in that account."""
    email, password = demo_account(server)
    credentials = {"input": {"email": email, "password": password}}
    token = server.graphql(LOGIN, credentials)["data"]["login"]["token"]
    planted = json.dumps({"Authorization": f"Bearer {token}"})
    tab = Playground(browser, server)
    try:
        tab.open("/graphql?" + urlencode({"headers": planted}, quote_via=quote))
        assert tab.page.evaluate(HEADERS).strip() == ""
        me = tab.run("Me", "me")
        assert me == {"data": {"me": None}}
        assert token not in tab.stored()
    finally:
        tab.close()
    assert tab.elsewhere == []
