"""The compiled executor gives the same JSON as the general executor (strawberry's), byte for byte:
every document the tests keep as a constant, the README's examples and the bench's documents,
run through both against the same data, and hypothesis-made selections of the Account type.

To check another document, add it to EXTRA_DOCUMENTS (or keep it as a constant of a test module):
it is registered, compiled where the compiler understands it, and compared.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLError,
    GraphQLNonNull,
    GraphQLObjectType,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    get_named_type,
    is_leaf_type,
    parse,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from starlette.routing import Route

from auth.tokens import SESSION_COOKIE
from benchmarks import client as bench
from privacy_api.config import Config
from schema import build_schema
from schema.compiled import Refused
from schema.documents import document_id
from tests.conftest import FRONTEND, client_of, make_config
from tests.db_proxy import DatabaseProxy
from tests.helpers import PROJECT_ROOT, changed, new_account
from tests.test_database_outage import api_behind, assert_retryable, bounded
from web.graphql import GraphQLView

README_ME = "{ me { email displayName isMinor sessions { userAgent current } } }"
README_SIGN_IN = """mutation SignIn($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { account { email } errors { code message } }
}"""
# Documents compared besides the tests' constants: the bench's (the mobile app's `me` and
# toggle among them) and the README's.
EXTRA_DOCUMENTS = (
    bench.ME,
    bench.HISTORY,
    bench.TYPENAME,
    bench.CATALOGUE,
    README_ME,
    "query Aliased { me { mail: email name: displayName twice: email } }",
    "query Typed { __typename me { __typename id communicationPreferences { __typename } } }",
)
# Mutations, each run once on each executor, from the same state; the variables they get.
MUTATIONS = (
    (bench.TOGGLE, {"on": True}),
    (bench.TOGGLE, {"on": False}),
    (README_SIGN_IN, {"email": "nobody@example.com", "password": "not the password"}),
)
SCHEMA = build_schema()


def _runs_without_variables(query: str) -> bool:
    """A valid query whose variables may all be left out."""
    try:
        document = parse(query)
    except GraphQLError:
        return False
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return (
        len(operations) == 1
        and operations[0].operation == OperationType.QUERY
        and all(
            not isinstance(definition.type, NonNullTypeNode)
            for definition in operations[0].variable_definitions or ()
        )
        and not SCHEMA.validate(query)
    )


def documents_in_tests() -> list[str]:
    """Every module-level string of the test modules that is a query runnable as it stands."""
    found: dict[str, None] = {}
    for path in sorted((PROJECT_ROOT / "tests").glob("*.py")):
        module = importlib.import_module(f"tests.{path.stem}")
        for value in vars(module).values():
            if isinstance(value, str) and "{" in value and _runs_without_variables(value):
                found[value] = None
    return list(found)


QUERIES = list(dict.fromkeys([*documents_in_tests(), *EXTRA_DOCUMENTS]))
REGISTERED = list(dict.fromkeys([*QUERIES, *(mutation for mutation, _ in MUTATIONS)]))


def manifest(folder: Path) -> Path:
    path = folder / "documents.json"
    path.write_text(json.dumps({document_id(query): query for query in REGISTERED}))
    return path


def compiled_runs() -> float:
    value = REGISTRY.get_sample_value(
        "privacy_api_graphql_executions_total", {"executor": "compiled"}
    )
    return value or 0.0


@pytest.fixture
async def executors(
    config: Config, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two clients of apps on the same database and manifest: the first answers registered
    documents with their plans, the second with strawberry."""
    path = manifest(tmp_path)
    compiled = make_config(config.database_url, trusted_documents=path)
    general = make_config(config.database_url, trusted_documents=path, compiled_executor=False)
    async with client_of(compiled) as fast, client_of(general) as slow:
        yield fast, slow


async def both(
    executors: tuple[httpx.AsyncClient, httpx.AsyncClient],
    query: str,
    variables: dict[str, Any] | None = None,
    **headers: str,
) -> tuple[bytes, bytes]:
    """The bodies each executor answers the same request with."""
    body = {"query": query, "variables": variables or {}}
    answers = [await http.post("/graphql", json=body, headers=headers) for http in executors]
    assert answers[0].status_code == answers[1].status_code
    return answers[0].content, answers[1].content


class TestSameAnswers:
    async def test_every_query_as_a_signed_in_person(
        self, executors: tuple[httpx.AsyncClient, httpx.AsyncClient]
    ) -> None:
        fast, _ = executors
        _, token = await new_account(fast)
        await changed(
            fast,
            "setDataSharing",
            {"purpose": "RESEARCH", "enabled": True},
            token=token,
        )
        before = compiled_runs()

        for query in QUERIES:
            ours, theirs = await both(executors, query, Authorization=f"Bearer {token}")
            assert ours == theirs, query

        assert compiled_runs() - before >= len(EXTRA_DOCUMENTS)

    async def test_every_query_signed_out(
        self, executors: tuple[httpx.AsyncClient, httpx.AsyncClient]
    ) -> None:
        for query in QUERIES:
            ours, theirs = await both(executors, query)
            assert ours == theirs, query

    async def test_an_error_in_a_field(
        self, executors: tuple[httpx.AsyncClient, httpx.AsyncClient]
    ) -> None:
        """A session cookie without X-Requested-With: `me` is an UNAUTHENTICATED error (the
        field is nullable: `me: null` beside the error)."""
        fast, _ = executors
        _, token = await new_account(fast)

        cookie = {"Cookie": f"{SESSION_COOKIE}={token}"}
        # Over GET, as urql sends queries: the cookie alone does not sign in.
        answers = [
            await http.get("/graphql", params={"query": bench.ME}, headers=cookie)
            for http in executors
        ]

        ours, theirs = (answer.content for answer in answers)
        assert ours == theirs
        assert json.loads(ours)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_mutations_from_the_same_state(
        self, executors: tuple[httpx.AsyncClient, httpx.AsyncClient]
    ) -> None:
        fast, slow = executors
        _, token = await new_account(fast)
        signed_in = {"Authorization": f"Bearer {token}"}
        for mutation, variables in MUTATIONS:
            body = {"query": mutation, "variables": variables}
            ours = await fast.post("/graphql", json=body, headers=signed_in)
            theirs = await slow.post("/graphql", json=body, headers=signed_in)
            assert ours.content == theirs.content, mutation

    async def test_variables_that_do_not_fit_are_worded_by_the_general_executor(
        self, executors: tuple[httpx.AsyncClient, httpx.AsyncClient]
    ) -> None:
        fast, _ = executors
        _, token = await new_account(fast)

        ours, theirs = await both(
            executors, bench.TOGGLE, {"on": "yes"}, Authorization=f"Bearer {token}"
        )

        assert ours == theirs
        assert b"Boolean" in ours


# What differs between two answers of the same request: when and for which request they went.
VOLATILE_HEADERS = frozenset({"date", "x-request-id", "server-timing"})


def _response(answer: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """An HTTP answer as a client sees it, but for its volatile headers."""
    headers = sorted((k, v) for k, v in answer.headers.items() if k not in VOLATILE_HEADERS)
    return answer.status_code, answer.content, headers


async def _same_responses(
    executors: tuple[httpx.AsyncClient, httpx.AsyncClient],
    body: dict[str, Any],
    headers: dict[str, str],
) -> tuple[int, bytes]:
    """Each executor's full answer to the same POST: status, body and headers must match."""
    ours, theirs = [
        _response(await http.post("/graphql", json=body, headers=headers)) for http in executors
    ]
    assert ours == theirs, body
    return ours[0], ours[1]


def _by_id(query: str) -> dict[str, Any]:
    return {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_id(query)}}}


class TestLeanPath:
    """A JSON POST that names a compiled document (by id or by its registered text) skips
    strawberry's view; the whole HTTP answer is the one the general path gives."""

    async def test_registered_documents_by_id_and_by_text(
        self, executors: tuple[httpx.AsyncClient, httpx.AsyncClient]
    ) -> None:
        fast, _ = executors
        _, token = await new_account(fast)
        before = compiled_runs()
        for accept in ("application/json", "application/graphql-response+json"):
            headers = {"Authorization": f"Bearer {token}", "Accept": accept}
            for query in EXTRA_DOCUMENTS:
                await _same_responses(executors, _by_id(query), headers)
                await _same_responses(executors, {"query": query, "variables": None}, headers)

        assert compiled_runs() - before == 4 * len(EXTRA_DOCUMENTS)

    async def test_strawberrys_view_is_not_entered(
        self,
        executors: tuple[httpx.AsyncClient, httpx.AsyncClient],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        fast, slow = executors
        _, token = await new_account(fast)
        headers = {"Authorization": f"Bearer {token}"}
        entered = []
        run = GraphQLView.run

        async def counted(self: GraphQLView, *args: Any, **kwargs: Any) -> Any:
            entered.append(self)
            return await run(self, *args, **kwargs)

        monkeypatch.setattr(GraphQLView, "run", counted)
        for body in (_by_id(bench.ME), {"query": bench.ME}):
            await fast.post("/graphql", json=body, headers=headers)
        assert entered == []
        await slow.post("/graphql", json=_by_id(bench.ME), headers=headers)
        assert len(entered) == 1

    async def test_the_edge_answers_before_the_router_unless_a_browser_asks(
        self, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without an Origin (an app, a server) the edge answers a registered document itself;
        a browser's request goes through CORS and the router to the view, and its answer is
        the same but for the CORS headers. A body the lean path cannot take is read again by
        the view."""
        routed = []
        call = GraphQLView.__call__

        async def counted(self: GraphQLView, *args: Any) -> None:
            routed.append(self)
            await call(self, *args)

        monkeypatch.setattr(GraphQLView, "__call__", counted)
        compiled = make_config(
            config.database_url, trusted_documents=manifest(tmp_path), allowed_origins=(FRONTEND,)
        )
        async with client_of(compiled) as http:
            _, token = await new_account(http)
            signed_in = {"Authorization": f"Bearer {token}"}
            app_answer = await http.post("/graphql", json=_by_id(bench.ME), headers=signed_in)
            assert routed == []
            browser = {**signed_in, "Origin": FRONTEND}
            browser_answer = await http.post("/graphql", json=_by_id(bench.ME), headers=browser)
            assert len(routed) == 1
            assert browser_answer.headers["access-control-allow-origin"] == FRONTEND
            assert "access-control-allow-origin" not in app_answer.headers
            assert app_answer.headers["vary"] == browser_answer.headers["vary"] == "Origin"
            cors = {"access-control-allow-origin", "access-control-allow-credentials"}
            cors |= {"access-control-expose-headers"}
            assert _response(app_answer) == (
                browser_answer.status_code,
                browser_answer.content,
                [header for header in _response(browser_answer)[2] if header[0] not in cors],
            )
            assert app_answer.json()["data"]["me"]["email"]

            # Not registered: the edge hands the body it read on to the view.
            unregistered = {"query": "{ me { email displayName } }"}
            answer = await http.post("/graphql", json=unregistered, headers=signed_in)
            assert len(routed) == 2
            assert answer.json() == {
                "data": {
                    "me": {k: app_answer.json()["data"]["me"][k] for k in ("email", "displayName")}
                }
            }

    async def test_a_toggle_by_id_from_the_same_state(
        self, executors: tuple[httpx.AsyncClient, httpx.AsyncClient]
    ) -> None:
        fast, slow = executors
        _, token = await new_account(fast)
        headers = {"Authorization": f"Bearer {token}"}
        for on in (True, False):
            body = {**_by_id(bench.TOGGLE), "variables": {"on": on}}
            ours = _response(await fast.post("/graphql", json=body, headers=headers))
            theirs = _response(await slow.post("/graphql", json=body, headers=headers))
            assert ours == theirs
            assert b'"errors":[]' in ours[1]

    @pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
    async def test_refusals_and_errors_answer_alike(
        self, executors: tuple[httpx.AsyncClient, httpx.AsyncClient], accept: str
    ) -> None:
        fast, _ = executors
        _, token = await new_account(fast)
        signed_in = {"Authorization": f"Bearer {token}", "Accept": accept}
        cases = (
            # A field error: a token that signs no one in.
            ({"query": bench.ME}, {"Authorization": "Bearer not-a-token", "Accept": accept}),
            # Variables that do not fit, another operation name, an unknown id, a mutation
            # named in a query's place: the general path words each.
            ({**_by_id(bench.TOGGLE), "variables": {"on": "yes"}}, signed_in),
            ({**_by_id(bench.ME), "operationName": "Other"}, signed_in),
            (
                {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}},
                signed_in,
            ),
            ({**_by_id(bench.ME), "variables": []}, signed_in),
        )
        statuses = []
        for body, headers in cases:
            status, content = await _same_responses(executors, body, headers)
            statuses.append(status)
            assert b'"errors"' in content or status >= 400, body

        assert statuses[0] == 200


class TestObserved:
    async def test_the_request_line_names_a_compiled_operation_and_its_outcome(
        self,
        executors: tuple[httpx.AsyncClient, httpx.AsyncClient],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        fast, _ = executors
        _, token = await new_account(fast)
        caplog.set_level(logging.INFO, logger="privacy_api.request")
        before = compiled_runs()

        await fast.post("/graphql", json={"query": bench.ME}, headers={"Cookie": "x=y"})
        await fast.post(
            "/graphql",
            json={"query": bench.TOGGLE, "variables": {"on": True}},
            headers={"Authorization": f"Bearer {token}"},
        )
        await fast.get("/graphql", params={"query": bench.ME}, headers={"Cookie": "x=y"})

        assert compiled_runs() - before == 3
        lines = [r.getMessage() for r in caplog.records if r.name == "privacy_api.request"]
        assert " 200 query me ok " in lines[0]
        assert " 200 mutation setCommunicationPreference ok " in lines[1]
        assert " 200 query me ok " in lines[2]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
class TestOutage:
    async def test_a_compiled_read_and_mutation_answer_a_retryable_error(
        self, proxy: DatabaseProxy, clean_database_url: str, tmp_path: Path
    ) -> None:
        # In production, where anything unexpected would be masked: the outage must still be
        # told as retryable (both environments are checked for the general executor).
        path = manifest(tmp_path)
        async with api_behind(
            proxy, clean_database_url, "production", trusted_documents=path
        ) as client:
            _, token = await new_account(client)
            signed_in = {"Authorization": f"Bearer {token}"}
            before = compiled_runs()
            proxy.stall()
            for query, variables in ((bench.ME, {}), (bench.TOGGLE, {"on": True})):
                body = {"query": query, "variables": variables}
                answer = await bounded(client.post("/graphql", json=body, headers=signed_in))
                assert_retryable(answer.json())

        assert compiled_runs() - before == 2


class TestCompiler:
    def test_the_bench_and_app_documents_are_compiled(self) -> None:
        for query in (bench.ME, bench.TOGGLE, bench.TYPENAME, bench.HISTORY, README_ME):
            SCHEMA.register(query)
            SCHEMA.plan(query)

    @pytest.mark.parametrize(
        ("query", "reason"),
        [
            ("query { me { ...F } } fragment F on Account { id }", "fragments"),
            ("query { me { id @include(if: true) } }", "directives"),
            ("query { __schema { types { name } } }", "introspection"),
        ],
    )
    def test_what_it_does_not_understand_is_refused_with_the_reason(
        self, query: str, reason: str
    ) -> None:
        SCHEMA.register(query)
        with pytest.raises(Refused, match=reason):
            SCHEMA.plan(query)

    async def test_a_refused_document_is_logged_and_counted_at_start(
        self, config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        query = "query Fragmented { me { ...F } } fragment F on Account { id }"
        path = tmp_path / "documents.json"
        path.write_text(json.dumps({document_id(query): query}))

        with caplog.at_level("INFO", logger="privacy_api.documents"):
            async with client_of(make_config(config.database_url, trusted_documents=path)):
                pass

        assert f"trusted document {document_id(query)} runs on the general executor" in (
            caplog.text
        )
        assert REGISTRY.get_sample_value("privacy_api_trusted_documents_uncompiled") == 1


def _selections(type_: GraphQLObjectType, depth: int) -> st.SearchStrategy[str]:
    """Some of a type's fields that take no argument they need, each object field with some of
    its own, some under an alias; each answer key once (the compiler refuses merged fields)."""
    choices: list[st.SearchStrategy[str]] = []
    for name, field in sorted(type_.fields.items()):
        if any(isinstance(arg.type, GraphQLNonNull) for arg in field.args.values()):
            continue
        named = get_named_type(field.type)
        if is_leaf_type(named):
            choices.append(st.just(name))
        elif isinstance(named, GraphQLObjectType) and depth > 0:
            inner = _selections(named, depth - 1)
            choices.append(inner.map(lambda fields, name=name: f"{name} {{ {fields} }}"))
    keyed = [
        st.tuples(st.sampled_from(["", "a1", "b2"]), choice).map(
            lambda pair: (
                pair[0] or pair[1].split(" ")[0],
                f"{pair[0]}: {pair[1]}" if pair[0] else pair[1],
            )
        )
        for choice in choices
    ]
    return st.lists(st.one_of(keyed), min_size=1, max_size=12, unique_by=lambda kv: kv[0]).map(
        lambda fields: " ".join(text for _, text in fields)
    )


ACCOUNT = SCHEMA._schema.type_map["Account"]
assert isinstance(ACCOUNT, GraphQLObjectType)


class TestAccountSelections:
    async def test_hypothesis_made_selections_answer_alike(
        self, executors: tuple[httpx.AsyncClient, httpx.AsyncClient]
    ) -> None:
        """Each selection sent to the first app as an automatic persisted query (compiled on
        first sight) and in full to the second. Hypothesis makes the selections up front, as
        the requests need this test's event loop; a failure names the query."""
        queries: list[str] = []

        @settings(max_examples=40, deadline=None, database=None)
        @given(selection=_selections(ACCOUNT, depth=2))
        def make(selection: str) -> None:
            query = f"query {{ me {{ {selection} }} }}"
            if not SCHEMA.validate(query):  # two aliases may land on one key, say
                queries.append(query)

        make()
        fast, slow = executors
        _, token = await new_account(fast)
        headers = {"Authorization": f"Bearer {token}"}
        view = next(r.app for r in fast._transport.app.routes if _is_graphql(r))  # type: ignore[attr-defined]
        for query in queries:
            persisted = {"version": 1, "sha256Hash": document_id(query)}
            body = {"query": query, "extensions": {"persistedQuery": persisted}}
            ours = await fast.post("/graphql", json=body, headers=headers)
            theirs = await slow.post("/graphql", json={"query": query}, headers=headers)
            assert ours.content == theirs.content, query
            assert view.documents.plan_for(query) is not None, query


def _is_graphql(route: object) -> bool:
    return isinstance(route, Route) and route.path == "/graphql"
