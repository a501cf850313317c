"""Every mutation field runs its use case in a unit of work of its own (schema/mutations.py).

A field that answered without one would have changed nothing while saying it had; the schema
turns that into an error, and every field of the Mutation type is called here to show none does.
"""

from __future__ import annotations

import httpx
import pytest
import strawberry
from starlette.requests import Request
from starlette.responses import Response

from models import Database, Role
from schema import ApiSchema, Mutation, Query
from schema.account import LogoutPayload
from schema.context import RequestContext
from tests.helpers import gql, signed_up, staff_token
from tests.test_nul_bytes import SCHEMA, operation, passed_on, sample
from web.cookies import RequestCaller
from web.services import Services

# Fields that end the officer's session go last, so every other field is called signed in.
LAST = ("requestAccountDeletion", "logout")


@pytest.fixture
async def officer(client: httpx.AsyncClient, database: Database) -> str:
    """A privacy officer passes every permission for people, so each field runs its resolver."""
    await signed_up(client)
    client.cookies.clear()
    return await staff_token(client, database, Role.PRIVACY_OFFICER, "officer@example.com")


@strawberry.type
class ForgetfulMutation(Mutation):
    @strawberry.mutation(description="Says it signed out without running anything.")
    async def forget_to_log_out(self) -> LogoutPayload:
        return LogoutPayload(ok=True, errors=[])


def _context(services: Services) -> RequestContext:
    request = Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/graphql",
            "headers": [],
            "query_string": b"",
            "client": ("127.0.0.1", 1),
            "state": {},
        }
    )
    response = Response()
    return RequestContext(request, response, services, RequestCaller(request, response, services))


class TestEveryMutationRunsItsUseCase:
    async def test_a_mutation_that_answers_without_a_unit_of_work_is_an_error(
        self, app: object, database: Database
    ) -> None:
        services: Services = app.state.services  # type: ignore[attr-defined]
        schema = ApiSchema(query=Query, mutation=ForgetfulMutation)
        context = _context(services)
        try:
            forgetful = await schema.execute(
                "mutation { forgetToLogOut { ok } }", context_value=context
            )
            kept = await schema.execute(
                'mutation { confirmEmailChange(input: {token: "no such code"}) '
                "{ email errors { code } } }",
                context_value=context,
            )
        finally:
            await context.close()
        assert forgetful.data is None
        assert forgetful.errors is not None
        assert "without running its use case in a unit of work" in forgetful.errors[0].message
        # The same schema answers a field that runs its use case through `mutate`.
        assert kept.errors is None
        assert kept.data == {
            "confirmEmailChange": {"email": None, "errors": [{"code": "NOT_FOUND"}]}
        }

    async def test_every_mutation_field_answers_through_its_unit_of_work(
        self, client: httpx.AsyncClient, officer: str
    ) -> None:
        fields = sorted(
            SCHEMA.mutation_type.fields.items(),  # type: ignore[union-attr]
            key=lambda item: LAST.index(item[0]) if item[0] in LAST else -1,
        )
        for name, field in fields:
            arguments = {key: sample(argument.type) for key, argument in field.args.items()}
            document = operation(
                "mutation", f"{name}{passed_on(field.args)} {{ __typename }}", field.args
            )
            body = await gql(client, document, arguments, token=officer)
            assert "errors" not in body, (name, body)
            assert body["data"][name] is not None, (name, body)
