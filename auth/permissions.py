"""Permission classes, one per role, declared on the fields they guard.

Each expects `info.context.actor()` to return the signed-in Actor or None, and
`info.context.cookie_left_unused` to say whether a session cookie came without the header that
lets it be used.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.exceptions import StrawberryGraphQLError
from strawberry.permission import BasePermission

from auth.actor import COOKIE_NEEDS_HEADER, STAFF_ROLES, Actor
from models import Role

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"


def signed_out_error(cookie_left_unused: bool) -> StrawberryGraphQLError:
    """UNAUTHENTICATED, saying why when a session cookie came but could not be used."""
    message = COOKIE_NEEDS_HEADER if cookie_left_unused else "Sign in to do this."
    return StrawberryGraphQLError(message, extensions={"code": UNAUTHENTICATED})


class _RolePermission(BasePermission):
    allowed_roles: frozenset[Role] = frozenset(Role)

    async def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        # Raised here rather than through on_unauthorized: a permission instance is shared by
        # concurrent requests, so it must not hold per-request state such as the message.
        actor: Actor | None = await info.context.actor()
        if actor is None:
            raise signed_out_error(info.context.cookie_left_unused)
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
