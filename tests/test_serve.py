"""`privacy-api serve` as deployed: what its log says about requests, and whose address it counts.

The in-process test client never runs uvicorn's access log or its proxy-header handling, so
these tests start the real server (one per setting, shared by the module) and read its output.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import httpx
import pytest

from privacy_api.config import ConfigError, load_config
from resolvers.catalogue import Topic
from resolvers.unsubscribe import link_token
from tests.conftest import TEST_SECRET
from tests.helpers import (
    CONFIRM_SIGNUP,
    LOGIN,
    SIGNUP,
    process_environment,
    serving,
    signup_input,
)
from tests.test_cli import free_port
from web.access_log import redact

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Plum-Tangerine-Orbit-77"
REQUEST_EXPORT = "mutation { requestDataExport { url errors { code } } }"
REQUEST_EMAIL_CHANGE = """
mutation Change($input: EmailChangeInput!) { requestEmailChange(input: $input) { errors { code } } }
"""
CONFIRM_EMAIL_CHANGE = """
mutation Confirm($token: String!) { confirmEmailChange(input: {token: $token}) { errors { code } } }
"""


@dataclass
class Server:
    http: httpx.Client
    log: Path
    data_dir: Path

    def output(self) -> str:
        """Everything the process wrote, stdout and stderr, so far."""
        return self.log.read_text()

    def graphql(
        self, query: str, variables: dict[str, Any] | None = None, **headers: str
    ) -> dict[str, Any]:
        response = self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def serve(data_dir: Path, **env: str) -> Iterator[Server]:
    """Run `privacy-api serve` on a fresh SQLite database until the module's tests are done."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    # `env` may replace any of these (an empty public URL: serve's own default).
    defaults = {
        "PRIVACY_API_DATA_DIR": str(data_dir),
        "PRIVACY_API_SECRET_KEY": TEST_SECRET,
        "PRIVACY_API_PUBLIC_URL": base,
        "PYTHONUNBUFFERED": "1",
    }
    environment = process_environment(**{**defaults, **env})
    environment.pop("PRIVACY_API_DATABASE_URL", None)
    with serving([], environment, log, port=port, ready="/healthz") as http:
        yield Server(http, log, data_dir)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server as it starts with no proxy configured."""
    yield from serve(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server told that a proxy on this machine forwards the requests."""
    yield from serve(tmp_path_factory.mktemp("proxied"), PRIVACY_API_TRUSTED_PROXIES="127.0.0.1")


def error_codes(body: dict[str, Any], field: str) -> list[str]:
    return [error["code"] for error in body["data"][field]["errors"]]


def refused_signup(server: Server, forwarded_for: str) -> list[str]:
    """A sign-up refused for its email, which costs no hashing; its codes."""
    variables = {"input": signup_input(email="not-an-email")}
    body = server.graphql(SIGNUP, variables, **{"X-Forwarded-For": forwarded_for})
    return error_codes(body, "signup")


class TestResponseHeaders:
    def test_the_server_software_is_not_named(self, server: Server) -> None:
        """uvicorn names itself in a `Server` header unless told not to: a free hint for
        anyone matching servers to known flaws."""
        for response in (server.http.get("/healthz"), server.http.get("/no-such-page")):
            assert "server" not in response.headers
            assert response.headers["x-content-type-options"] == "nosniff"


class TestAccessLog:
    def test_no_token_code_or_password_reaches_the_log(self, server: Server) -> None:
        http = server.http
        email, new_email = "logged@example.com", "renamed@example.com"
        started = server.graphql(SIGNUP, {"input": signup_input(email=email, password=PASSWORD)})
        assert error_codes(started, "signup") == []
        signup_link = urlsplit(message_link(server, email))
        signup_token = parse_qs(signup_link.query)["token"][0]
        assert http.get(signup_link.path, params={"token": signup_token}).status_code == 200
        signed_up = server.graphql(CONFIRM_SIGNUP, {"input": {"token": signup_token}})
        session_token = signed_up["data"]["confirmSignup"]["token"]
        account_id = uuid.UUID(signed_up["data"]["confirmSignup"]["account"]["id"])
        credentials = {"input": {"email": email, "password": PASSWORD}}
        second_token = server.graphql(LOGIN, credentials)["data"]["login"]["token"]
        assert session_token and second_token
        # GraphQL echoes a variable it refuses in its error message; that goes to the client only.
        mistyped = {"input": {**credentials["input"], "remember": True}}
        assert "errors" in server.graphql(LOGIN, mistyped)
        # A client may send an operation in the query string; the log must not keep it.
        http.get("/graphql", params={"query": LOGIN, "variables": json.dumps(credentials)})
        bearer = {"Authorization": f"Bearer {session_token}"}

        url = server.graphql(REQUEST_EXPORT, **bearer)["data"]["requestDataExport"]["url"]
        export_path = urlsplit(url).path
        export_token = export_path.rsplit("/", 1)[1]
        assert http.head(export_path).status_code == 200
        assert http.get(export_path).status_code == 200
        assert http.get(export_path).status_code == 410

        unsubscribe_token = link_token(TEST_SECRET, account_id, Topic.MARKETING)
        link = {"token": unsubscribe_token}
        assert http.get("/unsubscribe", params=link).status_code == 200
        one_click = {"List-Unsubscribe": "One-Click"}
        assert http.post("/unsubscribe", params=link, data=one_click).status_code == 200

        change = {"input": {"newEmail": new_email, "currentPassword": PASSWORD}}
        assert (
            error_codes(
                server.graphql(REQUEST_EMAIL_CHANGE, change, **bearer), "requestEmailChange"
            )
            == []
        )
        code = email_change_code(server, new_email)
        assert http.get("/confirm-email", params={"token": code}).status_code == 200
        confirmed = server.graphql(CONFIRM_EMAIL_CHANGE, {"token": code})
        assert error_codes(confirmed, "confirmEmailChange") == []

        output = server.output()
        secrets = {
            "password": PASSWORD,
            "session token": session_token,
            "second session token": second_token,
            "export token": export_token,
            "unsubscribe token": unsubscribe_token,
            "email change code": code,
            "signup confirmation token": signup_token,
            "email": email,
            "new email": new_email,
        }
        for name, secret in secrets.items():
            for written in {secret, quote(secret, safe=""), quote_plus(secret)}:
                assert written not in output, f"the {name} is in the log"
        # The requests are still logged, with what identifies them.
        for line in (
            '"POST /graphql HTTP/1.1" 200',
            '"GET /graphql?query=[redacted]&variables=[redacted] HTTP/1.1"',
            '"HEAD /exports/[redacted] HTTP/1.1" 200',
            '"GET /exports/[redacted] HTTP/1.1" 200',
            '"GET /exports/[redacted] HTTP/1.1" 410',
            '"GET /unsubscribe?token=[redacted] HTTP/1.1" 200',
            '"POST /unsubscribe?token=[redacted] HTTP/1.1" 200',
            '"GET /confirm-email?token=[redacted] HTTP/1.1" 200',
            '"GET /confirm-signup?token=[redacted] HTTP/1.1" 200',
        ):
            assert line in output, output


def delivered_text(server: Server, recipient: str) -> str:
    """The plain text of the message to `recipient`, from the .eml file that `serve` delivers to
    the development mail folder by itself (and says so in its log)."""
    deadline = time.monotonic() + 30
    while True:
        for path in (server.data_dir / "mail").glob("*.eml"):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            # The file is written before the line that says so reaches the log: wait for both.
            if message["To"] == recipient and f"written to {path}" in server.output():
                part = message.get_body(("plain",))
                assert part is not None
                text: str = part.get_content()
                return text
        assert time.monotonic() < deadline, f"no message delivered:\n{server.output()}"
        time.sleep(0.2)


def email_change_code(server: Server, recipient: str) -> str:
    """The code an email change's confirmation message carries."""
    text = delivered_text(server, recipient)
    found = re.search(r"code in the app: (\S+)", text)
    assert found, text
    return found[1]


def message_link(server: Server, recipient: str) -> str:
    """The first link the message to `recipient` carries."""
    text = delivered_text(server, recipient)
    found = re.search(r"https?://\S+", text)
    assert found, text
    return found[0]


class TestClientAddress:
    def test_forwarded_for_is_not_believed_by_default(self, server: Server) -> None:
        # Every attempt comes from this machine; naming another address each time changes
        # nothing, so the per-client sign-up limit (20 an hour) is reached.
        answers = [refused_signup(server, f"203.0.113.{n}") for n in range(1, 22)]

        assert answers[0] == ["INVALID_EMAIL"]
        assert answers[-1] == ["RATE_LIMITED"]

    def test_a_trusted_proxy_names_the_client(self, proxied_server: Server) -> None:
        spread = [refused_signup(proxied_server, f"198.51.100.{n}") for n in range(1, 22)]
        one_place = [refused_signup(proxied_server, "192.0.2.7") for _ in range(21)]

        assert "RATE_LIMITED" not in {code for codes in spread for code in codes}
        assert one_place[-1] == ["RATE_LIMITED"]
        assert '192.0.2.7:0 - "POST /graphql HTTP/1.1" 200' in proxied_server.output()


class TestTrustedProxiesSetting:
    def test_addresses_and_networks(self) -> None:
        config = load_config(
            {
                "PRIVACY_API_TRUSTED_PROXIES": " 10.0.0.7, 192.168.0.0/16 ,fd00::/8",
                "PRIVACY_API_SECRET_KEY": TEST_SECRET,
            }
        )
        assert config.trusted_proxies == ("10.0.0.7", "192.168.0.0/16", "fd00::/8")

    def test_none_by_default(self) -> None:
        assert load_config({"PRIVACY_API_SECRET_KEY": TEST_SECRET}).trusted_proxies == ()

    @pytest.mark.parametrize("value", ["*", "proxy.internal", "10.0.0.300"])
    def test_anything_else_is_refused_at_start(self, value: str) -> None:
        with pytest.raises(ConfigError, match="PRIVACY_API_TRUSTED_PROXIES"):
            load_config(
                {"PRIVACY_API_TRUSTED_PROXIES": value, "PRIVACY_API_SECRET_KEY": TEST_SECRET}
            )


class TestRedact:
    @pytest.mark.parametrize(
        ("target", "logged"),
        [
            ("/graphql", "/graphql"),
            ("/exports/abc", "/exports/[redacted]"),
            ("/export/" + "x" * 43, "/export/[redacted]"),
            ("/unsubscribe?token=a.b.c&x", "/unsubscribe?token=[redacted]&[redacted]"),
            ("/graphql?%7B%22password%22=1", "/graphql?[redacted]"),
        ],
    )
    def test_secrets_in_the_request_target_are_replaced(self, target: str, logged: str) -> None:
        assert redact(target) == logged
