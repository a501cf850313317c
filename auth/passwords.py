"""Password hashing behind two verbs. The only module that imports passlib."""

from __future__ import annotations

import asyncio

from passlib.context import CryptContext

# argon2id at OWASP's recommended minimum: 19 MiB of memory, 2 passes, 1 lane.
_context = CryptContext(
    schemes=["argon2"],
    argon2__type="ID",
    argon2__memory_cost=19 * 1024,
    argon2__rounds=2,
    argon2__parallelism=1,
)

# Verified against when the email is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = _context.hash("not-a-real-password-only-for-timing")


async def get_password_hash(password: str) -> str:
    """Hash a password off the event loop."""
    return await asyncio.to_thread(_context.hash, password)


async def verify_password(password: str, stored_hash: str | None) -> tuple[bool, str | None]:
    """Check a password off the event loop.

    Returns whether it matched and, when the stored hash uses outdated parameters, a new hash to
    store. With no stored hash (unknown account) a dummy hash is checked so timing tells nothing.
    """
    if stored_hash is None:
        await asyncio.to_thread(_context.verify, password, _DUMMY_HASH)
        return False, None
    return await asyncio.to_thread(_context.verify_and_update, password, stored_hash)
