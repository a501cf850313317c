"""What an operator sees of the running service: one JSON log line per request with no personal
data, Prometheus metrics (added up over every worker), and OpenTelemetry spans when asked for."""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from privacy_api.config import Config, load_config, tracing_requested
from resolvers.catalogue import Topic
from resolvers.unsubscribe import link_token
from tests.conftest import TEST_RECEIPT_KEY, TEST_SECRET, TEST_WEBHOOK_KEY, make_config
from tests.helpers import (
    CONFIRM_SIGNUP,
    LOGIN,
    SIGNUP,
    gql,
    serving,
    signed_up,
    signed_up_through_the_api,
    signup_input,
)
from tests.test_cli import free_port
from web.app import create_app

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Rate limits kept in Redis outlive a run: each run signs in as someone new.
EMAIL = f"observed.{uuid.uuid4().hex[:12]}@example.com"
PASSWORD = "Quartz-Lantern-Meadow-42"
PHONE = "+4915112345678"
TOGGLE = """
mutation Toggle($input: CommunicationPreferenceInput!) {
  setCommunicationPreference(input: $input) { errors { code } }
}
"""
UPDATE_PROFILE = """
mutation Profile($input: UpdateProfileInput!) { updateProfile(input: $input) { errors { code } } }
"""
REQUEST_EXPORT = "mutation Export { requestDataExport { url errors { code } } }"
REQUEST_EMAIL_CHANGE = """
mutation Change($input: EmailChangeInput!) { requestEmailChange(input: $input) { errors { code } } }
"""
NEWSLETTER_BY_EMAIL = {"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": True}


@dataclass
class Server:
    http: httpx.Client
    log: Path
    # Where the internal metrics listener answers (PRIVACY_API_METRICS_PORT), if there is one.
    metrics_url: str = ""

    def graphql(
        self, query: str, variables: dict[str, Any] | None = None, **headers: str
    ) -> dict[str, Any]:
        response = self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body: dict[str, Any] = response.json()
        return body

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`privacy-api serve --workers 2` as the compose file runs it: production, metrics on a
    port of their own."""
    data_dir = tmp_path_factory.mktemp("production")
    port, metrics_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PRIVACY_API_", "OTEL_"))},
        "PRIVACY_API_ENV": "production",
        "PRIVACY_API_DATA_DIR": str(data_dir),
        "PRIVACY_API_SECRET_KEY": TEST_SECRET,
        "PRIVACY_API_RECEIPT_SIGNING_KEY": TEST_RECEIPT_KEY,
        "PRIVACY_API_WEBHOOK_SECRET_KEY": TEST_WEBHOOK_KEY,
        "PRIVACY_API_PUBLIC_URL": base,
        # A Redis database of its own: other servers of the suite sign up from 127.0.0.1 too,
        # and the limits they count would be this server's.
        "PRIVACY_API_RATE_LIMIT_STORAGE": f"redis://127.0.0.1:6379/{1 + uuid.uuid4().int % 15}",
        "PRIVACY_API_METRICS_PORT": str(metrics_port),
        "PYTHONUNBUFFERED": "1",
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with serving(["--workers", "2"], environment, log, port=port, ready="/readyz") as http:
        yield Server(http, log, f"http://127.0.0.1:{metrics_port}/metrics")


def request_lines(server: Server) -> list[dict[str, Any]]:
    return [
        line for line in map(json.loads, server.lines()) if line["logger"] == "privacy_api.request"
    ]


def logged_request(server: Server, request_id: str) -> dict[str, Any]:
    """The request's line, once its worker has written it (just after the response)."""
    deadline = time.monotonic() + 10
    while True:
        found = [line for line in request_lines(server) if line["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.05)


class TestProductionLog:
    def test_a_full_run_logs_json_lines_without_personal_data(self, production: Server) -> None:
        http = production.http
        signup = production.graphql(
            SIGNUP, {"input": signup_input(email=EMAIL, password=PASSWORD, phone=PHONE)}
        )
        assert signup["data"]["signup"]["errors"] == [], signup
        # The code the confirmation message carries, from the outbox as a mailer reads it.
        with sqlite3.connect(production.log.parent / "privacy.db") as database:
            (code,) = database.execute(
                "SELECT secret FROM notifications WHERE recipient = ? AND kind = ?",
                (EMAIL, "signup_confirmation"),
            ).fetchone()
        confirmed = production.graphql(CONFIRM_SIGNUP, {"input": {"email": EMAIL, "code": code}})
        payload = confirmed["data"]["confirmSignup"]
        assert payload["errors"] == [], payload
        token, account_id = payload["token"], uuid.UUID(payload["account"]["id"])
        bearer = {"Authorization": f"Bearer {token}"}
        credentials = {"input": {"email": EMAIL, "password": PASSWORD}}
        login = production.graphql(LOGIN, credentials)["data"]["login"]
        assert login["errors"] == [], login
        second_token = login["token"]
        # Errors of every kind: a wrong password, a signed-out read, a document that does not
        # parse, one that does not validate (it echoes the variable), a route that does not exist.
        http.cookies.clear()  # from here on, signed in by the bearer token only
        wrong = {"input": {"email": EMAIL, "password": PASSWORD + "x"}}
        assert production.graphql(LOGIN, wrong)["data"]["login"]["errors"]
        signed_out = production.graphql(REQUEST_EXPORT)
        assert signed_out["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert "errors" in production.graphql(f'{{ me(email: "{EMAIL}") {{ id }}')
        assert "errors" in production.graphql(LOGIN, {"input": {**credentials["input"], "x": 1}})
        assert http.get(f"/no-such-page/{EMAIL}").status_code == 404
        # Settings, profile, an email change (a code in the outbox) and an export download.
        toggled = production.graphql(TOGGLE, {"input": NEWSLETTER_BY_EMAIL}, **bearer)
        assert toggled["data"]["setCommunicationPreference"]["errors"] == []
        profile = {"input": {"phone": PHONE, "displayName": "Observed Person"}}
        assert production.graphql(UPDATE_PROFILE, profile, **bearer)["data"]["updateProfile"]
        change = {"input": {"newEmail": "renamed." + EMAIL, "currentPassword": PASSWORD}}
        assert production.graphql(REQUEST_EMAIL_CHANGE, change, **bearer)["data"]
        url = production.graphql(REQUEST_EXPORT, **bearer)["data"]["requestDataExport"]["url"]
        export_path = urlsplit(url).path
        assert http.get(export_path).status_code == 200
        unsubscribe = link_token(TEST_SECRET, account_id, Topic.MARKETING)
        assert http.get("/unsubscribe", params={"token": unsubscribe}).status_code == 200
        assert http.get("/metrics").status_code == 404  # not on the API's port
        assert httpx.get(production.metrics_url).status_code == 200

        secrets = {
            "email": EMAIL,
            "new email": "renamed." + EMAIL,
            "phone": PHONE,
            "phone digits": PHONE.removeprefix("+"),
            "password": PASSWORD,
            "session token": token,
            "second session token": second_token,
            "signup confirmation code": code,
            "export token": export_path.rsplit("/", 1)[1],
            "unsubscribe token": unsubscribe,
        }
        output = production.log.read_text()
        for name, secret in secrets.items():
            for written in {secret, quote(secret, safe=""), quote_plus(secret)}:
                assert written not in output, f"the {name} is in the log"
        # Every line is one JSON object, uvicorn's own included.
        logged = [json.loads(line) for line in production.lines()]
        assert all(isinstance(line, dict) and line["level"] for line in logged)
        # Times in ISO 8601 with their offset, as log collectors parse them without a hint.
        assert all(datetime.fromisoformat(line["time"]).utcoffset() is not None for line in logged)
        assert any(line["message"].startswith("Started server process") for line in logged)

    def test_every_request_line_names_its_request_route_status_and_duration(
        self, production: Server
    ) -> None:
        response = production.http.post(
            "/graphql",
            json={"query": "query Greeting { __typename }", "operationName": "Greeting"},
            headers={"X-Request-ID": "trace-me-0001"},
        )
        assert response.status_code == 200
        production.http.get("/exports/" + "t" * 43, headers={"X-Request-ID": "trace-me-0002"})

        mine = logged_request(production, "trace-me-0001")
        assert mine["method"] == "POST"
        assert mine["route"] == "/graphql"
        assert mine["operation"] == "query __typename"
        assert mine["operation_name"] == "Greeting"
        assert mine["status"] == 200
        assert mine["outcome"] == "ok"
        assert mine["duration_ms"] >= 0
        export = logged_request(production, "trace-me-0002")
        assert export["route"] == "/exports/{token}"
        assert export["status"] == 404
        assert export["outcome"] == "http_404"
        lines = request_lines(production)
        for line in lines:
            assert {"request_id", "route", "status", "duration_ms", "outcome"} <= line.keys()
            assert len(line["request_id"]) >= 8


class TestDevelopmentLog:
    async def test_a_text_line_names_the_operation_outcome_duration_and_request_id(
        self, client: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="privacy_api.request")
        headers = {"X-Request-ID": "dev-line-0001"}
        await client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
        await client.get("/unsubscribe", params={"token": "b" * 40}, headers=headers)

        graphql, page = [r.getMessage() for r in caplog.records if r.name == "privacy_api.request"]
        assert '"POST /graphql HTTP/1.1" 200 query __typename ok ' in graphql
        assert graphql.endswith("ms request_id=dev-line-0001")
        assert '"GET /unsubscribe?token=[redacted] HTTP/1.1"' in page
        assert "b" * 40 not in page


class TestMetricsOfSeveralWorkers:
    def test_the_internal_listener_adds_up_every_worker(self, production: Server) -> None:
        for _ in range(12):
            production.graphql("query Ping { __typename }")

        # The listener counts what both workers answered, and reads the backlogs.
        families = scrape(httpx.get(production.metrics_url))
        count = sample(families, "privacy_api_request_duration_seconds_count")
        assert count[("query __typename", "ok")] >= 12
        assert "privacy_api_outbox_unsent_messages" in families
        assert "privacy_api_webhook_undelivered" in families
        assert value(families, "privacy_api_db_pool_capacity") > 0
        # The API's own port serves no metrics: publishing it publishes none.
        assert production.http.get("/metrics").status_code == 404


def scrape(response: httpx.Response) -> dict[str, list[Sample]]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def sample(families: dict[str, list[Sample]], name: str) -> dict[tuple[str, ...], float]:
    """The values of one sample name, keyed by their label values (in label order)."""
    family = name.removesuffix("_count").removesuffix("_total")
    return {tuple(s.labels.values()): s.value for s in families.get(family, []) if s.name == name}


def value(families: dict[str, list[Sample]], name: str, **labels: str) -> float:
    return sum(
        s.value
        for samples in families.values()
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


class TestMetrics:
    async def test_off_in_production_unless_asked_for(self, production_client: Any) -> None:
        assert (await production_client.get("/metrics")).status_code == 404

    async def test_what_a_request_changes_shows_in_the_next_scrape(self, client: Any) -> None:
        before = scrape(await client.get("/metrics"))
        token = await signed_up_through_the_api(client, email=EMAIL, password=PASSWORD)
        toggled = await gql(client, TOGGLE, {"input": NEWSLETTER_BY_EMAIL}, token=token)
        assert toggled["data"]["setCommunicationPreference"]["errors"] == []
        change = {"input": {"newEmail": "renamed." + EMAIL, "currentPassword": PASSWORD}}
        await gql(client, REQUEST_EMAIL_CHANGE, change, token=token)
        # Sign-ups refused for their email cost no hashing; the 21st in an hour is rate limited.
        invalid = {"input": signup_input(email="not-an-email")}
        refusals = [await gql(client, SIGNUP, invalid) for _ in range(20)]
        assert refusals[-1]["data"]["signup"]["errors"][0]["code"] == "RATE_LIMITED"
        after = scrape(await client.get("/metrics"))

        def grew(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        duration = "privacy_api_request_duration_seconds_count"
        assert grew(duration, operation="mutation setCommunicationPreference", outcome="ok") == 1
        assert grew(duration, operation="mutation signup", outcome="ok") == 1
        assert grew(duration, operation="mutation signup", outcome="INVALID_EMAIL") == 19
        assert grew(duration, operation="mutation signup", outcome="RATE_LIMITED") == 1
        assert grew(duration, operation="GET /metrics", outcome="ok") == 1
        # The sign-up's events (its settings and policy acceptance) and the toggle's one.
        assert grew("privacy_api_consent_events_written_total") >= 2
        door = "signup-per-client"
        assert grew("privacy_api_rate_limit_refusals_total", door=door) == 1
        # The email change queued a confirmation that no mailer has sent.
        assert value(after, "privacy_api_outbox_unsent_messages") >= 1
        assert value(after, "privacy_api_outbox_oldest_unsent_age_seconds") >= 0
        # Every connection the requests took went back to the pool.
        in_use = "privacy_api_db_connections_in_use"
        assert in_use in after
        assert value(after, in_use) == value(before, in_use)
        assert value(after, "privacy_api_db_pool_capacity") > 0

    async def test_errors_are_counted_by_their_code(self, client: Any) -> None:
        await gql(client, REQUEST_EXPORT)
        await client.post("/graphql", json={"query": "{ me { nosuchfield } }"})
        await client.post("/graphql", json={"query": "{ madeUpByTheClient }"})
        await client.post("/graphql", json={"query": "{ me "})
        families = scrape(await client.get("/metrics"))

        count = sample(families, "privacy_api_request_duration_seconds_count")
        assert count[("mutation requestDataExport", "UNAUTHENTICATED")] >= 1
        assert count[("query me", "GRAPHQL_VALIDATION_FAILED")] >= 1
        assert count[("query unknown", "GRAPHQL_VALIDATION_FAILED")] >= 1
        assert count[("invalid", "GRAPHQL_PARSE_FAILED")] >= 1
        assert all(operation.split(" ")[0] in OPERATION_KINDS for operation, _ in count), count


class TestPayloadErrorOutcome:
    """A mutation refused with a payload error ran without a GraphQL error, yet it did not
    succeed: its line and its metric say the payload's first code, not `ok`."""

    async def test_a_failed_sign_in_is_counted_and_logged_by_its_code(
        self, client: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        await signed_up(client, email=EMAIL, password=PASSWORD)
        caplog.set_level(logging.INFO, logger="privacy_api.request")
        before = scrape(await client.get("/metrics"))
        # A client that asks only for the message still gets its failure counted by code.
        wrong = {"input": {"email": EMAIL, "password": PASSWORD + "x"}}
        quiet = (
            "mutation Login($input: LoginInput!) { login(input: $input) { errors { message } } }"
        )
        assert (await gql(client, quiet, wrong))["data"]["login"]["errors"]
        assert (await gql(client, LOGIN, wrong))["data"]["login"]["errors"]
        right = {"input": {"email": EMAIL, "password": PASSWORD}}
        assert (await gql(client, LOGIN, right))["data"]["login"]["errors"] == []
        after = scrape(await client.get("/metrics"))

        def grew(outcome: str) -> float:
            name = "privacy_api_request_duration_seconds_count"
            labels = {"operation": "mutation login", "outcome": outcome}
            return value(after, name, **labels) - value(before, name, **labels)

        assert grew("INVALID_CREDENTIALS") == 2
        assert grew("ok") == 1
        lines = [r.getMessage() for r in caplog.records if r.name == "privacy_api.request"]
        logins = [line for line in lines if " mutation login " in line]
        assert [line.split(" mutation login ")[1].split()[0] for line in logins] == [
            "INVALID_CREDENTIALS",
            "INVALID_CREDENTIALS",
            "ok",
        ]


# The metrics are the process's: other tests' requests (a CORS preflight, a PUT) show too.
OPERATION_KINDS = {"query", "mutation", "subscription", "invalid"} | {
    "GET",
    "POST",
    "HEAD",
    "OPTIONS",
    "PUT",
    "PATCH",
    "DELETE",
}


class TestTracingSwitch:
    @pytest.mark.parametrize(
        ("env", "on"),
        [
            ({}, False),
            ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
            ({"OTEL_TRACES_EXPORTER": "none"}, False),
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
            ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ],
    )
    def test_the_standard_variables_switch_it_on(self, env: dict[str, str], on: bool) -> None:
        assert tracing_requested(env) is on
        assert load_config({**env, "PRIVACY_API_SECRET_KEY": TEST_SECRET}).tracing is on

    async def test_off_by_default_nothing_of_it_runs(self, config: Config) -> None:
        app = create_app(config)
        try:
            names = {middleware.cls.__name__ for middleware in app.user_middleware}  # type: ignore[attr-defined]
            assert "OpenTelemetryMiddleware" not in names
        finally:
            await app.state.services.database.dispose()


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Every span this test process finishes, in memory (the process-wide provider is ours)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "another provider was installed first"
    return exporter


class TestTracing:
    async def test_a_request_has_spans_named_for_its_operation_without_personal_data(
        self, clean_database_url: str, spans: InMemorySpanExporter
    ) -> None:
        app = create_app(make_config(clean_database_url, tracing=True))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                token = await signed_up(http, email=EMAIL, password=PASSWORD, phone=PHONE)
                spans.clear()
                # The password as a literal in the document, as the README's first example has it.
                given = f'{{email: "{EMAIL}", password: "{PASSWORD}"}}'
                literal = f"mutation SignIn {{ login(input: {given}) {{ token }} }}"
                await http.post("/graphql", json={"query": literal})
                await gql(http, TOGGLE, {"input": NEWSLETTER_BY_EMAIL}, token=token)
                await http.get("/unsubscribe", params={"token": "a" * 40})
                # Neither a document that does not parse nor a missing operation breaks a span.
                await http.post("/graphql", json={"query": f'{{ me(email: "{EMAIL}") '})
                await http.post("/graphql", json={"query": "{ me { id } }", "operationName": "X"})
        finally:
            await app.state.services.database.dispose()

        finished = spans.get_finished_spans()
        names = [span.name for span in finished]
        assert "GraphQL Query: SignIn" in names
        assert "GraphQL Query: Toggle" in names
        assert "GraphQL Resolving: setCommunicationPreference" in names
        assert "POST /graphql" in names
        assert "GET /unsubscribe" in names
        [operation] = [span for span in finished if span.name == "GraphQL Query: Toggle"]
        assert operation.attributes is not None
        assert operation.attributes["graphql.operation.name"] == "Toggle"
        assert operation.attributes["graphql.operation.type"] == "mutation"
        server = [span for span in finished if span.name == "POST /graphql"]
        # The operation's spans belong to the request's server span.
        assert operation.parent is not None
        assert operation.parent.span_id in {span.context.span_id for span in server}
        written = repr([(span.name, dict(span.attributes or {}), span.events) for span in finished])
        for secret in (EMAIL, PASSWORD, PHONE, token, "a" * 40):
            assert secret not in written
        # Database spans name the database server; no other span names an address.
        others = [span for span in finished if not is_database(span)]
        assert "127.0.0.1" not in repr([dict(span.attributes or {}) for span in others])

    async def test_each_statement_is_a_span_of_its_request(
        self, clean_database_url: str, spans: InMemorySpanExporter
    ) -> None:
        app = create_app(make_config(clean_database_url, tracing=True))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                token = await signed_up(http, email=EMAIL, password=PASSWORD, phone=PHONE)
                spans.clear()
                await gql(http, TOGGLE, {"input": NEWSLETTER_BY_EMAIL}, token=token)
        finally:
            await app.state.services.database.dispose()

        finished = spans.get_finished_spans()
        [server] = [span for span in finished if span.name == "POST /graphql"]
        statements = [span for span in finished if is_statement(span)]
        # Reading the session, the setting and the ledger's last event; writing the change.
        assert len(statements) >= 4, [span.name for span in finished]
        assert {span.context.trace_id for span in statements} == {server.context.trace_id}
        sql = " ".join(str((span.attributes or {}).get("db.statement", "")) for span in statements)
        assert "INSERT INTO consent_events" in sql
        for secret in (EMAIL, PHONE, token):
            assert secret not in repr([dict(span.attributes or {}) for span in statements])


def is_statement(span: ReadableSpan) -> bool:
    """A span the SQLAlchemy instrumentation made for one statement."""
    attributes = span.attributes or {}
    return "db.statement" in attributes or "db.query.text" in attributes


def is_database(span: ReadableSpan) -> bool:
    """A span of the SQLAlchemy instrumentation: a statement, or opening a connection."""
    attributes = span.attributes or {}
    return "db.system" in attributes or "db.system.name" in attributes


class Collector(ThreadingHTTPServer):
    """An OpenTelemetry collector's OTLP/HTTP trace receiver, keeping every span it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.received: list[tuple[str, str, dict[str, str]]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def trace(self, trace_id: str) -> list[tuple[str, dict[str, str]]]:
        """The spans of one trace received so far: name and attributes."""
        return [
            (name, attributes) for found, name, attributes in self.received if found == trace_id
        ]


class _CollectorHandler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: str(a.value) for a in span.attributes}
                    self.server.received.append((span.trace_id.hex(), span.name, attributes))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what was received."""


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class TestTracedServer:
    """`serve` as an operator runs it with OTEL_EXPORTER_OTLP_ENDPOINT set: each request line
    names the trace its spans reach the collector in, statements included."""

    def test_a_log_line_leads_to_its_trace(self, tmp_path: Path, collector: Collector) -> None:
        port, metrics_port = free_port(), free_port()
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PRIVACY_API_", "OTEL_"))},
            "PRIVACY_API_ENV": "production",
            "PRIVACY_API_DATA_DIR": str(tmp_path),
            "PRIVACY_API_SECRET_KEY": TEST_SECRET,
            "PRIVACY_API_RECEIPT_SIGNING_KEY": TEST_RECEIPT_KEY,
            "PRIVACY_API_WEBHOOK_SECRET_KEY": TEST_WEBHOOK_KEY,
            "PRIVACY_API_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            # Export within a tenth of a second rather than the default five.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "PRIVACY_API_METRICS_PORT": str(metrics_port),
            "PYTHONUNBUFFERED": "1",
        }
        log = tmp_path / "server.log"
        with serving([], environment, log, port=port, ready="/readyz") as http:
            wrong = {"input": {"email": EMAIL, "password": PASSWORD}}
            answer = http.post(
                "/graphql",
                json={"query": LOGIN, "variables": wrong},
                headers={"X-Request-ID": "traced-0001"},
            ).json()
            assert answer["data"]["login"]["errors"], answer
            line = logged_request(Server(http, log), "traced-0001")
            # One worker: the listener reads the process's own metrics.
            families = scrape(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics"))
            count = sample(families, "privacy_api_request_duration_seconds_count")
            assert count[("mutation login", "INVALID_CREDENTIALS")] == 1
            deadline = time.monotonic() + 20
            traced = line["trace_id"]
            while not any(is_sql(attributes) for _, attributes in collector.trace(traced)):
                assert time.monotonic() < deadline, collector.received
                time.sleep(0.1)

        assert line["outcome"] == "INVALID_CREDENTIALS"
        assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"])
        assert re.fullmatch(r"[0-9a-f]{16}", line["span_id"])
        assert datetime.fromisoformat(line["time"]).utcoffset() is not None
        names = [name for name, _ in collector.trace(line["trace_id"])]
        assert "POST /graphql" in names
        assert "GraphQL Query: Login" in names
        sent = repr(collector.received)
        assert EMAIL not in sent
        assert PASSWORD not in sent


def is_sql(attributes: dict[str, str]) -> bool:
    return "db.statement" in attributes or "db.query.text" in attributes
