"""Password hashing behind two verbs. The only module that imports passlib."""

from __future__ import annotations

import asyncio
import fcntl
import os
import tempfile
import threading
import weakref
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

from passlib.context import CryptContext

# argon2id at OWASP's recommended minimum: 19 MiB of memory, 2 passes, 1 lane. The test suite
# signs up thousands of people and may ask for the cheapest argon2id instead, through
# PRIVACY_API_PASSWORD_COST=test, which the configuration refuses in production.
COST_VARIABLE = "PRIVACY_API_PASSWORD_COST"
STANDARD, TEST = "standard", "test"
COSTS = {STANDARD: {"memory_cost": 19 * 1024, "rounds": 2}, TEST: {"memory_cost": 64, "rounds": 1}}


def _context_for(cost: str) -> CryptContext:
    settings = COSTS[cost]
    return CryptContext(
        schemes=["argon2"],
        argon2__type="ID",
        argon2__memory_cost=settings["memory_cost"],
        argon2__rounds=settings["rounds"],
        argon2__parallelism=1,
    )


def use_cost(cost: str) -> None:
    """Hash new passwords at this cost (STANDARD or TEST) from now on, in this process."""
    global _context, _DUMMY_HASH
    _context = _context_for(cost)
    # Verified against when the email is unknown, so a miss costs as long as a wrong password.
    _DUMMY_HASH = _context.hash("not-a-real-password-only-for-timing")


_context: CryptContext
_DUMMY_HASH: str
use_cost(TEST if os.environ.get(COST_VARIABLE, "").strip().lower() == TEST else STANDARD)


T = TypeVar("T")

# Each hash takes 19 MiB and a core for tens of milliseconds. Running at most one fewer than the
# cores at once keeps a core for reads and bounds memory under a burst of sign-ins. The bound is
# the host's, not each process's: `serve --workers N` runs N processes on the same cores, so the
# slots are lock files every process on the host takes turns on.
_HASHING_SLOTS = max(1, (os.cpu_count() or 2) - 1)
_SLOT_FILES = Path(tempfile.gettempdir()) / f"privacy-api-hashing-{os.getuid()}"
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _in_a_host_slot(work: Callable[..., T], *args: str) -> T:
    """Run `work` (in a worker thread) holding one of the host's hashing slots."""
    _SLOT_FILES.mkdir(mode=0o700, exist_ok=True)
    with ExitStack() as held:
        for number in range(_HASHING_SLOTS):
            lock = held.enter_context(slot_file(number).open("a"))
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when it closes
                return work(*args)
            except BlockingIOError:
                continue
        # Every slot is busy: wait for one, each thread on its own.
        lock = held.enter_context(slot_file(threading.get_ident() % _HASHING_SLOTS).open("a"))
        fcntl.flock(lock, fcntl.LOCK_EX)
        return work(*args)


def slot_file(number: int) -> Path:
    return _SLOT_FILES / f"slot-{number}"


async def _off_the_loop(work: Callable[..., T], *args: str) -> T:
    # A semaphore belongs to one event loop; tests and the CLI run several loops in turn. It keeps
    # this process from holding more threads than there are slots.
    slots = _slots.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(_HASHING_SLOTS))
    async with slots:
        return await asyncio.to_thread(_in_a_host_slot, work, *args)


async def get_password_hash(password: str) -> str:
    """Hash a password off the event loop."""
    return await _off_the_loop(_context.hash, password)


async def verify_password(password: str, stored_hash: str | None) -> tuple[bool, str | None]:
    """Check a password off the event loop.

    Returns whether it matched and, when the stored hash uses outdated parameters, a new hash to
    store. With no stored hash (unknown account) a dummy hash is checked so timing tells nothing.
    """
    if stored_hash is None:
        await _off_the_loop(_context.verify, password, _DUMMY_HASH)
        return False, None
    return await _off_the_loop(_context.verify_and_update, password, stored_hash)
