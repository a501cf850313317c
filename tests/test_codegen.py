"""The codegen configurations the README gives client developers type every scalar the schema
has, and the Python one reads what the API sends."""

from __future__ import annotations

import ast
import re
from datetime import date, datetime
from typing import Any

import httpx
import yaml
from graphql import GraphQLScalarType, build_schema, specified_scalar_types

from schema import schema_sdl
from tests.helpers import PROJECT_ROOT, gql, new_account

README = (PROJECT_ROOT / "README.md").read_text()
SDL = (PROJECT_ROOT / "schema.graphql").read_text()


def _section() -> str:
    start = README.index("## Typed clients")
    return README[start : README.index("\n## ", start + 1)]


def _block(language: str) -> str:
    [block] = re.findall(rf"```{language}\n(.*?)```", _section(), re.DOTALL)
    return str(block)


def custom_scalars() -> set[str]:
    """The scalars of the schema as committed, beyond GraphQL's own."""
    types = build_schema(SDL).type_map
    return {
        name
        for name, kind in types.items()
        if isinstance(kind, GraphQLScalarType)
        and name not in specified_scalar_types
        and not name.startswith("__")
    }


def documented_python_scalars() -> dict[str, GraphQLScalarType]:
    """The README's gql scalars, run as written (its imports of gql itself and the client left
    out: gql is the app's dependency, not ours)."""
    module = ast.parse(_block("python"))
    kept = [
        statement
        for statement in module.body
        if not (
            isinstance(statement, ast.ImportFrom) and (statement.module or "").startswith("gql")
        )
        and not (
            isinstance(statement, ast.Assign | ast.Expr) and "client" in ast.unparse(statement)
        )
    ]
    namespace: dict[str, Any] = {}
    exec(compile(ast.Module(kept, type_ignores=[]), "README.md", "exec"), namespace)  # noqa: S102
    return {scalar.name: scalar for scalar in namespace["SCALARS"]}


class TestDocumentedScalars:
    def test_the_committed_schema_is_the_served_one(self) -> None:
        assert schema_sdl() == SDL
        assert custom_scalars() == {"Date", "DateTime", "JSON"}

    def test_graphql_codegen(self) -> None:
        config = yaml.safe_load(_block("yaml"))
        assert config["schema"] == "schema.graphql"
        [output] = config["generates"].values()
        assert output["config"]["strictScalars"] is True
        assert set(output["config"]["scalars"]) == custom_scalars()

    def test_apollo_kotlin(self) -> None:
        mapped = re.findall(r'mapScalar\w*\("(\w+)"', _block("kotlin"))
        assert sorted(mapped) == sorted(custom_scalars())

    def test_gql(self) -> None:
        assert set(documented_python_scalars()) == custom_scalars()


class TestGqlScalarsReadTheAnswers:
    async def test_dates_and_times_as_sent(self, client: httpx.AsyncClient) -> None:
        _, token = await new_account(client)
        me = (await gql(client, "{ me { birthDate createdAt } }", token=token))["data"]["me"]
        scalars = documented_python_scalars()
        born = scalars["Date"].parse_value(me["birthDate"])
        created = scalars["DateTime"].parse_value(me["createdAt"])
        assert type(born) is date and isinstance(created, datetime)
        assert created.utcoffset() is not None  # an aware time, comparable with others
        assert scalars["Date"].serialize(born) == me["birthDate"]
