"""One check on the arguments of every field, before its resolver runs: no NUL in any text.

It sits on each field that takes arguments, added as the schema is built (see `guard_arguments`),
so a new field or input is covered without anyone remembering to. A mutation answers with its
payload's errors (INVALID_INPUT); any other field with a GraphQL error (BAD_USER_INPUT).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.exceptions import StrawberryGraphQLError
from strawberry.extensions import FieldExtension
from strawberry.schema.name_converter import NameConverter
from strawberry.types import Info
from strawberry.types.base import StrawberryOptional, get_object_definition
from strawberry.types.field import StrawberryField
from strawberry.types.lazy_type import LazyType

from resolvers.errors import UserError
from resolvers.validation import NUL, nul_error
from schema.errors import BAD_USER_INPUT, to_user_errors

ERRORS_FIELD = "errors"


def _holds_nul(value: Any, name: str, names: NameConverter) -> str | None:
    """The GraphQL name of the innermost argument or input field whose text holds a NUL."""
    if isinstance(value, str):
        return name if NUL in value else None
    if isinstance(value, list | tuple):
        return next((found for item in value if (found := _holds_nul(item, name, names))), None)
    definition = get_object_definition(value)
    if definition is not None and definition.is_input:
        for field in definition.fields:
            inner = getattr(value, field.python_name, None)
            if found := _holds_nul(inner, names.get_graphql_name(field), names):
                return found
    return None


def _payload_refusal(payload: type) -> Callable[[list[UserError]], Any]:
    """How to answer with this payload type when its input is refused: the errors, and null
    for everything else. Checked as the schema is built, so a payload that cannot be answered
    that way fails every test rather than one request."""
    definition = get_object_definition(payload, strict=True)
    for field in definition.fields:
        can_be_left_out = (
            field.python_name == ERRORS_FIELD
            or isinstance(field.type, StrawberryOptional)
            or field.default is not dataclasses.MISSING
        )
        if not can_be_left_out:
            raise TypeError(
                f"{payload.__name__}.{field.python_name} needs a default or to be optional, "
                "so the payload can carry input errors alone"
            )
    left_out = {
        field.python_name: None
        for field in definition.fields
        if field.python_name != ERRORS_FIELD and field.default is dataclasses.MISSING
    }
    return lambda errors: payload(**left_out, errors=to_user_errors(errors))


class RefuseNulInText(FieldExtension):
    def apply(self, field: StrawberryField) -> None:
        self.arguments = field.arguments
        returns = field.type.resolve_type() if isinstance(field.type, LazyType) else field.type
        definition = get_object_definition(returns)
        has_errors = definition is not None and any(
            payload_field.python_name == ERRORS_FIELD for payload_field in definition.fields
        )
        self.refuse = _payload_refusal(returns) if has_errors else None  # type: ignore[arg-type]

    def _refusal(self, info: Info, kwargs: dict[str, Any]) -> Any:
        """The answer for arguments holding a NUL, or None when they are fine."""
        names = info.schema.config.name_converter
        for argument in self.arguments:
            value = kwargs.get(argument.python_name)
            if name := _holds_nul(value, names.get_graphql_name(argument), names):
                error = nul_error(name)
                if self.refuse is None:
                    raise StrawberryGraphQLError(
                        error.message, extensions={"code": BAD_USER_INPUT, "field": error.field}
                    )
                return self.refuse([error])
        return None

    def resolve(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        refused = self._refusal(info, kwargs)
        return next_(source, info, **kwargs) if refused is None else refused

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        refused = self._refusal(info, kwargs)
        return await next_(source, info, **kwargs) if refused is None else refused


def guard_arguments(fields: list[StrawberryField]) -> list[StrawberryField]:
    """Puts the check on each field that takes arguments, once, innermost: permission checks
    (outer extensions) still answer first, and nothing of the resolver runs on refused input."""
    for field in fields:
        if field.arguments and not any(isinstance(e, RefuseNulInText) for e in field.extensions):
            field.extensions.insert(0, RefuseNulInText())
    return fields
