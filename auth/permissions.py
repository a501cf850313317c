"""Permission classes, one per role and one per API key scope, declared on the fields they guard.

Each role's class expects `info.context.actor()` to return the signed-in Actor or None,
`info.context.cookie_left_unused` to say whether a session cookie came without the header that
lets it be used, and `info.context.session_refused` whether a session token (bearer or cookie)
came that names no live session; a scope's class expects `info.context.machine()` to return the
machine client behind an API key, or None.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.exceptions import StrawberryGraphQLError
from strawberry.permission import BasePermission

from auth.actor import COOKIE_NEEDS_HEADER, STAFF_ROLES, Actor
from auth.api_keys import Machine
from models import ApiScope, Role

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"


SESSION_REFUSED = (
    "The session token is not valid or has expired (signed out, revoked, or past its "
    "lifetime): sign in again."
)


def signed_out_error(
    *, cookie_left_unused: bool = False, session_refused: bool = False
) -> StrawberryGraphQLError:
    """UNAUTHENTICATED, saying why when a session cookie or token came but could not be used."""
    if cookie_left_unused:
        message = COOKIE_NEEDS_HEADER
    elif session_refused:
        message = SESSION_REFUSED
    else:
        message = "Sign in to do this."
    return StrawberryGraphQLError(message, extensions={"code": UNAUTHENTICATED})


class _RolePermission(BasePermission):
    allowed_roles: frozenset[Role] = frozenset(Role)

    async def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        # Raised here rather than through on_unauthorized: a permission instance is shared by
        # concurrent requests, so it must not hold per-request state such as the message.
        actor: Actor | None = await info.context.actor()
        if actor is None:
            raise signed_out_error(
                cookie_left_unused=info.context.cookie_left_unused,
                session_refused=info.context.session_refused,
            )
        if actor.role not in self.allowed_roles:
            raise StrawberryGraphQLError(
                "You are not allowed to do this.", extensions={"code": FORBIDDEN}
            )
        return True


class IsAuthenticated(_RolePermission):
    """Any signed-in person."""


class IsSupport(_RolePermission):
    """Support staff, and privacy officers who can do all support can."""

    allowed_roles = STAFF_ROLES


class IsPrivacyOfficer(_RolePermission):
    allowed_roles = frozenset({Role.PRIVACY_OFFICER})


class _ScopePermission(BasePermission):
    """Fields for machine clients: an API key holding the scope. A person, even signed in, is
    not one (and a key is not a person: it reaches no person's or staff field)."""

    scope: ApiScope

    async def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        machine: Machine | None = await info.context.machine()
        if machine is None:
            raise StrawberryGraphQLError(
                f"Call this with an API key holding the {self.scope.value} scope "
                "(Authorization: Bearer pk_...).",
                extensions={"code": UNAUTHENTICATED},
            )
        if self.scope not in machine.scopes:
            raise StrawberryGraphQLError(
                f"This API key does not hold the {self.scope.value} scope.",
                extensions={"code": FORBIDDEN},
            )
        return True


class CanReadConsent(_ScopePermission):
    scope = ApiScope.CONSENT_READ


class CanReadSuppressions(_ScopePermission):
    scope = ApiScope.SUPPRESSIONS_READ
