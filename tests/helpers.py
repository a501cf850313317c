"""Small factories and a GraphQL caller shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

import httpx
import uvicorn
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from auth import passwords
from auth.rate_limits import RateLimiter
from models import (
    ConsentEvent,
    Database,
    Notification,
    NotificationKind,
    PendingSignup,
    utcnow,
)
from privacy_api import cli
from resolvers.account import Client, check_applicant, open_account
from resolvers.age import today_everywhere
from resolvers.errors import Rejected
from resolvers.notifications import mark_sent
from resolvers.validation import normalize_email
from tests.conftest import SEED_POLICY_VERSION, TEST_SECRET, TEST_WEBHOOK_KEY

PROJECT_ROOT = Path(__file__).resolve().parent.parent

ACCOUNT_FIELDS = """
    id email displayName phone birthDate country isMinor role acceptedPolicyVersion createdAt
"""

SIGNUP = """
mutation Signup($input: SignupInput!) {
  signup(input: $input) { confirmationSent errors { field message code } }
}
"""

CONFIRM_SIGNUP = f"""
mutation ConfirmSignup($input: ConfirmSignupInput!) {{
  confirmSignup(input: $input) {{
    token
    account {{ {ACCOUNT_FIELDS} }}
    errors {{ field message code }}
  }}
}}
"""

LOGIN = f"""
mutation Login($input: LoginInput!) {{
  login(input: $input) {{
    token
    account {{ {ACCOUNT_FIELDS} }}
    errors {{ field message code }}
  }}
}}
"""

ME = f"query {{ me {{ {ACCOUNT_FIELDS} sessions {{ id userAgent current }} }} }}"

PASSWORD = "correct horse battery"


async def post(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a GraphQL operation as JSON and return the response, for its headers (always 200)."""
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=all_headers
    )
    assert response.status_code == 200, response.text
    return response


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST a GraphQL operation as JSON and return the decoded body (always HTTP 200)."""
    response = await post(client, query, variables, token=token, headers=headers)
    body: dict[str, Any] = response.json()
    return body


def from_address(client: httpx.AsyncClient, address: str) -> httpx.AsyncClient:
    """A client of the same app whose requests come from another address (as uvicorn reports
    the peer): another place, for the limits counted per place. Close it after use."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport), "a client of the app in this process"
    elsewhere = httpx.ASGITransport(app=transport.app, client=(address, 40000))
    return httpx.AsyncClient(transport=elsewhere, base_url="http://testserver")


def signup_input(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "email": "ada@example.com",
        "password": PASSWORD,
        "displayName": "Ada Lovelace",
        "birthDate": "1990-12-10",
        "country": "GB",
        "acceptPolicyVersion": SEED_POLICY_VERSION,
    }
    values.update(overrides)
    if isinstance(values["birthDate"], date):
        values["birthDate"] = values["birthDate"].isoformat()
    return values


def database_behind(client: httpx.AsyncClient) -> Database:
    """The database of the app a test client talks to (through httpx's ASGI transport)."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport), "a client of the app in this process"
    database: Database = transport.app.state.services.database  # type: ignore[attr-defined]
    return database


async def outbox(
    database: Database, kind: NotificationKind, recipient: str | None = None
) -> list[Notification]:
    """The messages of one kind in the outbox (to one address), oldest first."""
    query = select(Notification).where(Notification.kind == kind)
    if recipient is not None:
        query = query.where(Notification.recipient == recipient)
    async with database.session() as session:
        found = await session.scalars(query.order_by(Notification.created_at, Notification.id))
        return list(found.all())


async def signup_code(database: Database, email: str, *, deliver: bool = False) -> str | None:
    """The code of the latest signup confirmation mailed to `email`, while its signup waits.
    With `deliver`, the message is then marked sent as a mailer would (which deletes it)."""
    address = normalize_email(email) or email
    async with database.session() as session:
        waiting = await session.scalar(
            select(PendingSignup.id).where(PendingSignup.email == address)
        )
    messages = await outbox(database, NotificationKind.SIGNUP_CONFIRMATION, address)
    if waiting is None or not messages:
        return None
    if deliver:
        async with database.transaction() as session:
            await mark_sent(session, [messages[-1].id])
    return messages[-1].secret


async def start_signup(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Only the `signup` mutation: its payload (`confirmationSent`, `errors`)."""
    body = await gql(client, SIGNUP, {"input": signup_input(**overrides)}, headers=headers)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["signup"]
    return payload


async def confirm_signup(
    client: httpx.AsyncClient, input: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The `confirmSignup` payload (`token`, `account`, `errors`)."""
    body = await gql(client, CONFIRM_SIGNUP, {"input": input}, headers=headers)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["confirmSignup"]
    return payload


async def signup(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Sign up as a person does: `signup`, then `confirmSignup` with the code mailed to the
    address. Returns the `confirmSignup` payload (`token`, `account`, `errors`), or the `signup`
    payload when the signup was refused or mailed no code (the address has an account)."""
    values = signup_input(**overrides)
    started = await start_signup(client, headers, **values)
    refused = {"token": None, "account": None, **started}
    if started["errors"]:
        return refused
    # Delivered, so that the outbox holds only what the test itself causes.
    code = await signup_code(database_behind(client), values["email"], deliver=True)
    if code is None:
        return refused
    return await confirm_signup(client, {"email": values["email"], "code": code}, headers)


async def signed_up_through_the_api(client: httpx.AsyncClient, **overrides: Any) -> str:
    """Sign up as a person does (`signup`, the mailed code, `confirmSignup`), which also sets
    the web session's cookie on `client`: the bearer token."""
    payload = await signup(client, **overrides)
    assert payload["errors"] == [], payload["errors"]
    token: str = payload["token"]
    return token


async def new_account(client: httpx.AsyncClient, **overrides: Any) -> tuple[str, str]:
    """A new account, signed in: its id and bearer token. For the tests that need someone, not a
    signup: the account is made by the code `confirmSignup` runs (the same checks, consent events
    and session), without the two requests and the mail between them, which the signup tests go
    through (`signup`). Signed in by token, as the mobile app is: no cookie is set."""
    values = signup_input(**overrides)
    services = client._transport.app.state.services  # type: ignore[attr-defined]
    device = Client(
        address="127.0.0.1",
        user_agent=client.headers.get("user-agent"),
        session_days=services.config.session_days,
    )
    try:
        applicant = await check_applicant(
            services.database.session,
            RateLimiter("memory://"),
            device,
            refused_recently=False,
            email=values["email"],
            password=values["password"],
            display_name=values["displayName"],
            birth_date=date.fromisoformat(values["birthDate"]),
            country=values["country"],
            accept_policy_version=values["acceptPolicyVersion"],
            phone=values.get("phone"),
            us_state=values.get("usState"),
        )
        password_hash = await passwords.get_password_hash(values["password"])
        async with services.database.transaction() as session:
            _, signed_in = await open_account(
                session, device, applicant, password_hash, global_privacy_control=False
            )
    except Rejected as refused:
        raise AssertionError(f"signup refused: {refused.errors}") from None
    assert signed_in is not None
    return str(signed_in.account.id), signed_in.token


async def signed_up(client: httpx.AsyncClient, **overrides: Any) -> str:
    """A new account, signed in (see `new_account`): its bearer token."""
    _, token = await new_account(client, **overrides)
    return token


def birth_date_for_age(years: int) -> date:
    """A date of birth that makes a person `years` old today, whatever today is."""
    return date(today_everywhere(utcnow()).year - years, 1, 1)


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["errors"]]


@contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Collect every SQL statement the engine sends while the block runs.

    Transaction control is left out: SQLite's BEGIN is sent as a statement, PostgreSQL's is not,
    and a count should mean the same on both.
    """
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith("BEGIN"):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def staff_token(client: httpx.AsyncClient, database: Any, role: Any, email: str) -> str:
    """Create a staff member of the given role (as the CLI would) and sign them in."""
    from resolvers.account import create_staff

    async with database.transaction() as session:
        await create_staff(
            session, email=email, password=PASSWORD, display_name="Staff Member", role=role
        )
    body = await gql(client, LOGIN, {"input": {"email": email, "password": PASSWORD}})
    client.cookies.clear()  # the staff member acts through the token only
    token: str = body["data"]["login"]["token"]
    return token


async def logged_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Sign in successfully and return the bearer token."""
    body = await gql(client, LOGIN, {"input": {"email": email, "password": password}})
    payload: dict[str, Any] = body["data"]["login"]
    assert payload["errors"] == [], payload["errors"]
    token: str = payload["token"]
    return token


def assert_unauthenticated(body: dict[str, Any]) -> None:
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
    assert body["data"] is None


def assert_session_refused(body: dict[str, Any]) -> None:
    """`me` answered for a session token that names no live session: an error that says so."""
    assert body["data"] == {"me": None}, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "not valid or has expired" in error["message"]


SETTINGS_FIELDS = """
    communicationPreferences { channel topic enabled locked updatedAt }
    dataSharing { purpose enabled updatedAt }
    visibility { profile email phone searchEngineIndexing }
    cookieConsent { strictlyNecessary functional analytics advertising gpcApplied updatedAt }
"""

ME_SETTINGS = f"query {{ me {{ id isMinor {SETTINGS_FIELDS} }} }}"

_SETTINGS_INPUTS = {
    "setCommunicationPreference": "CommunicationPreferenceInput!",
    "updateCommunicationPreferences": "CommunicationPreferencesInput!",
    "setDataSharing": "DataSharingInput!",
    "updateVisibility": "VisibilityInput!",
    "setCookieConsent": "CookieConsentInput!",
    "optOutOfMarketing": "OptOutInput",
}


def settings_mutation(operation: str) -> str:
    """The document for one settings mutation, answering with every setting and the errors."""
    return f"""
    mutation Change($input: {_SETTINGS_INPUTS[operation]}) {{
      {operation}(input: $input) {{
        account {{ id {SETTINGS_FIELDS} }}
        errors {{ field message code }}
      }}
    }}
    """


async def change(
    client: httpx.AsyncClient,
    operation: str,
    input: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run a settings mutation that must reach its resolver and return its payload."""
    body = await gql(
        client, settings_mutation(operation), {"input": input}, token=token, headers=headers
    )
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"][operation]
    return payload


async def changed(
    client: httpx.AsyncClient, operation: str, input: dict[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Run a settings mutation that must succeed and return the account it answers with."""
    payload = await change(client, operation, input, **kwargs)
    assert payload["errors"] == [], payload["errors"]
    account: dict[str, Any] = payload["account"]
    return account


async def my_settings(
    client: httpx.AsyncClient, token: str | None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The signed-in person's `me` with every setting."""
    body = await gql(client, ME_SETTINGS, token=token, headers=headers)
    assert "errors" not in body, body
    me: dict[str, Any] = body["data"]["me"]
    return me


def preference(account: dict[str, Any], channel: str, topic: str) -> bool:
    """Whether one channel and topic is on, in an account answered with SETTINGS_FIELDS."""
    matches = [
        p["enabled"]
        for p in account["communicationPreferences"]
        if p["channel"] == channel and p["topic"] == topic
    ]
    assert len(matches) == 1, matches
    return bool(matches[0])


def sharing(account: dict[str, Any], purpose: str) -> bool:
    matches = [s["enabled"] for s in account["dataSharing"] if s["purpose"] == purpose]
    assert len(matches) == 1, matches
    return bool(matches[0])


HISTORY = """
query History($first: Int!, $after: String, $key: String) {
  me {
    consentHistory(first: $first, after: $after, key: $key) {
      edges { cursor node { key oldValue newValue actor source policyVersion requestId } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


async def history(
    client: httpx.AsyncClient,
    token: str,
    *,
    first: int = 100,
    after: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """One page of the signed-in person's consent history: `edges` and `pageInfo`."""
    variables = {"first": first, "after": after, "key": key}
    body = await gql(client, HISTORY, variables, token=token)
    assert "errors" not in body, body
    page: dict[str, Any] = body["data"]["me"]["consentHistory"]
    return page


async def events(
    client: httpx.AsyncClient, token: str, *, key: str | None = None
) -> list[dict[str, Any]]:
    """The newest 100 consent events of the signed-in person, newest first."""
    page = await history(client, token, key=key)
    return [edge["node"] for edge in page["edges"]]


async def count_events(database: Database) -> int:
    """Every consent event stored, of every account."""
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(ConsentEvent)) or 0)


@contextmanager
def serving(
    arguments: list[str], environment: dict[str, str], log: Path, *, port: int, ready: str
) -> Iterator[httpx.Client]:
    """`privacy-api serve` with `arguments` (the port added), in the background, its output in
    `log`: a client of it once `ready` answers 200, stopped when the block ends."""
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "privacy_api", "serve", "--port", str(port), *arguments],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, f"serve stopped:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"serve did not start:\n{log.read_text()}"
                try:
                    if http.get(ready).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield http
    finally:
        process.terminate()
        process.wait(timeout=30)


def process_environment(**env: str) -> dict[str, str]:
    """The environment for running `privacy-api` from a test: this one, with `env` over it. The
    test suite's cheap password hashing is left out where production is asked for, which refuses
    it (and says so)."""
    environment = dict(os.environ)
    if env.get("PRIVACY_API_ENV") == "production":
        environment.pop(passwords.COST_VARIABLE, None)
    return {**environment, **env}


async def run_until_stopped(
    database_url: str, data_dir: Path, command: str, done: Callable[[], bool], **env: str
) -> tuple[int | None, str]:
    """Run the real `privacy-api <command>` on the test's database until `done()` holds (30
    seconds at most), then send SIGTERM as a service manager would: its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "privacy_api",
        command,
        cwd=PROJECT_ROOT,
        env=process_environment(
            PRIVACY_API_DATABASE_URL=database_url,
            PRIVACY_API_DATA_DIR=str(data_dir),
            PRIVACY_API_SECRET_KEY=TEST_SECRET,
            PRIVACY_API_WEBHOOK_SECRET_KEY=TEST_WEBHOOK_KEY,
            **env,
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            if done() or process.returncode is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        out, _ = await process.communicate()
    return process.returncode, out.decode()


class CliRun(NamedTuple):
    """What a `privacy-api` command run in this process did: its exit code and its output."""

    code: int
    out: str
    err: str


# A command run in this process that has not ended by then has hung (a real one would be killed).
CLI_TIMEOUT = 120.0


async def run_cli(database_url: str, data_dir: Path, *args: str, **env: str) -> CliRun:
    """Run `privacy-api` on the test's database with the test's secret: exit code, out, err.

    In this process (see `run_in_process`), to spare each run the start of an interpreter."""
    environment = process_environment(
        **{
            "PRIVACY_API_DATABASE_URL": database_url,
            "PRIVACY_API_DATA_DIR": str(data_dir),
            "PRIVACY_API_SECRET_KEY": TEST_SECRET,
            # The key the test's own app and worker seal and open webhook secrets with.
            "PRIVACY_API_WEBHOOK_SECRET_KEY": TEST_WEBHOOK_KEY,
            **env,
        }
    )
    return await asyncio.to_thread(run_in_process, list(args), environment)


def run_in_process(argv: list[str], environment: dict[str, str]) -> CliRun:
    """Run `privacy-api` with these arguments as a process would, with exactly `environment` as
    its environment, its own event loops (in a thread of its own), its own stdout and stderr, and
    its own logging; the test's come back afterwards. For sync tests, or async ones through
    `asyncio.to_thread`.

    Exit codes are `main`'s, and an exception it lets out fails the test (where a process would
    print a traceback). A command that would go on to serve fails at once instead: in this
    process, uvicorn would never return. What only a real interpreter shows (output at import
    or at exit, `sys.exit`) is left to the few tests that start one."""
    outcome: list[CliRun | BaseException] = []

    def command() -> None:
        try:
            outcome.append(_run_swapped(argv, environment))
        except BaseException as error:  # handed to the test's thread, which raises it
            outcome.append(error)

    thread = threading.Thread(target=command, name=f"privacy-api {' '.join(argv)}", daemon=True)
    thread.start()
    thread.join(CLI_TIMEOUT)
    if thread.is_alive():
        raise AssertionError(f"privacy-api {argv} did not end within {CLI_TIMEOUT:g} seconds")
    [result] = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def _refuse_to_serve(*args: Any, **kwargs: Any) -> None:
    raise AssertionError(
        "the command started serving (uvicorn.run); in this process it would never end: "
        "a command that serves is run as a real process (tests.helpers.serving)"
    )


def _run_swapped(argv: list[str], environment: dict[str, str]) -> CliRun:
    out, err = io.StringIO(), io.StringIO()
    saved_environment = dict(os.environ)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    os.environ.clear()
    os.environ.update(environment)
    try:
        with (
            mock.patch.object(uvicorn, "run", _refuse_to_serve),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                code = cli.main(argv)
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved_environment)
        # The command set up logging for itself (to its stderr); the test's comes back.
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    return CliRun(code, out.getvalue(), err.getvalue())
