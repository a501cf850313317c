"""The error face of every mutation payload."""

from __future__ import annotations

import strawberry

from resolvers.errors import ErrorCode, UserError

ErrorCodeEnum = strawberry.enum(
    ErrorCode, name="ErrorCode", description="What went wrong, for the frontend to switch on."
)


@strawberry.type(name="UserError", description="A problem the person can fix.")
class UserErrorType:
    field: str | None = strawberry.field(description="The input field at fault, if one is.")
    message: str
    code: ErrorCodeEnum  # type: ignore[valid-type]

    @classmethod
    def from_domain(cls, error: UserError) -> UserErrorType:
        return cls(field=error.field, message=error.message, code=error.code)


def to_user_errors(errors: list[UserError]) -> list[UserErrorType]:
    return [UserErrorType.from_domain(error) for error in errors]
