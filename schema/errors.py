"""The error faces of the API: every mutation payload's `errors`, and the `extensions.code` of a
request refused before it ran."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

import strawberry
from graphql import GraphQLError

from resolvers.errors import ErrorCode, UserError

# What clients switch on when a request cannot run, with the names Apollo Server gives them (which
# Apollo Client, urql and gql users already handle). Every executor tags its errors with these.
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"  # the document is not GraphQL
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"  # it does not fit the schema or our limits
BAD_USER_INPUT = "BAD_USER_INPUT"  # a variable or an argument's value does not fit


def coded(errors: Sequence[GraphQLError], code: str) -> list[GraphQLError]:
    """The errors, each with `extensions.code`: `code` for those that carry none yet (a limit's
    own code, such as QUERY_TOO_COMPLEX, stays). New errors, so cached ones are never changed."""
    return [
        error
        if error.extensions and "code" in error.extensions
        else GraphQLError(
            error.message,
            error.nodes,
            error.source,
            error.positions,
            error.path,
            error.original_error,
            {**(error.extensions or {}), "code": code},
        )
        for error in errors
    ]


ERROR_CODES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_EMAIL: "Not an email address that can receive mail.",
    ErrorCode.EMAIL_UNAVAILABLE: (
        "This email address cannot be used; says nothing about whether it is registered."
    ),
    ErrorCode.WEAK_PASSWORD: "Too short, too long, or a common password.",
    ErrorCode.INVALID_DISPLAY_NAME: "The display name is empty or too long.",
    ErrorCode.INVALID_PHONE: "Not a phone number that can be written in E.164.",
    ErrorCode.INVALID_COUNTRY: "Not an ISO 3166-1 alpha-2 country code.",
    ErrorCode.INVALID_BIRTH_DATE: "Not a date of birth that can be real, such as one to come.",
    ErrorCode.AGE_RESTRICTED: "Under 13: no account, and nothing about the child is kept.",
    ErrorCode.POLICY_OUTDATED: "Not the policy version in force: read and accept that one.",
    ErrorCode.POLICY_VERSION_EXISTS: "A policy version with this name was published already.",
    ErrorCode.INVALID_CREDENTIALS: "The email and password do not match an account.",
    ErrorCode.RATE_LIMITED: "Too many tries: wait before the next one (the message says how long).",
    ErrorCode.NOT_FOUND: "What the change is about does not exist, or is not yours.",
    ErrorCode.DELETION_NOT_CANCELLABLE: (
        "The deletion's date has passed, or the privacy team scheduled it: it cannot be cancelled."
    ),
    ErrorCode.PROCESSING_SUSPENDED: (
        "The account is pending deletion: nothing that needs consent may happen until it is kept."
    ),
    ErrorCode.INVALID_INPUT: "A value is out of range or malformed; the message says why.",
    ErrorCode.SETTING_LOCKED: "This setting cannot be turned off, such as security alerts.",
    ErrorCode.PARENTAL_CONSENT_REQUIRED: (
        "Below the age of digital consent in the person's country, this needs a parent's consent."
    ),
    ErrorCode.PARENTAL_CONSENT_NOT_NEEDED: (
        "The person is old enough to consent on their own: no parent is asked."
    ),
    ErrorCode.MINOR_PROTECTED: "Not allowed for a minor, such as a public profile.",
    ErrorCode.CORRECTION_REQUIRED: (
        "The change would lift a protection of minors: ask staff with requestCorrection."
    ),
    ErrorCode.PHONE_REQUIRED: "SMS needs a phone number on the account first.",
    ErrorCode.IDEMPOTENCY_KEY_REUSED: (
        "This idempotency key was used for a different change; send a new key for a new change."
    ),
}

strawberry.enum(
    ErrorCode, name="ErrorCode", description="What went wrong, for the frontend to switch on."
)
# Strawberry reads a value's description from the enum member itself; the domain's enum holds
# plain strings, so the descriptions are set on strawberry's definition of it.
for _value in ErrorCode.__strawberry_definition__.values:  # type: ignore[attr-defined]
    _value.description = ERROR_CODES.get(ErrorCode(_value.value))


@strawberry.type(name="UserError", description="A problem the person can fix.")
class UserErrorType:
    field: str | None = strawberry.field(description="The input field at fault, if one is.")
    message: str
    code: ErrorCode = strawberry.field(
        description="What went wrong, for the frontend to switch on."
    )
    retry_after: int | None = strawberry.field(
        default=None,
        description="For RATE_LIMITED: the seconds to wait before trying again, as the "
        "response's Retry-After header says. Null for every other code.",
    )

    @classmethod
    def from_domain(cls, error: UserError) -> UserErrorType:
        noted = _payload_errors.get()
        if noted is not None:
            noted.append(error.code)
        return cls(
            field=error.field,
            message=error.message,
            code=error.code,
            retry_after=error.refusal.retry_after if error.refusal else None,
        )


# The codes of the payload errors an operation returned, in order, while one is being noted: a
# refused mutation raises no GraphQL error, yet its log line and metric should not say `ok`.
_payload_errors: ContextVar[list[ErrorCode] | None] = ContextVar("payload_errors", default=None)


def note_payload_errors() -> list[ErrorCode]:
    """From now on in this context (the operation and the resolvers it starts), every payload
    error built is added to the list returned."""
    noted: list[ErrorCode] = []
    _payload_errors.set(noted)
    return noted


def to_user_errors(errors: list[UserError]) -> list[UserErrorType]:
    return [UserErrorType.from_domain(error) for error in errors]
