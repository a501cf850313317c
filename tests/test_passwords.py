"""Password hashing takes turns across every API process on the host."""

from __future__ import annotations

import asyncio
import fcntl

from auth import passwords


async def test_hashing_waits_while_other_processes_hold_every_slot() -> None:
    passwords.slot_file(0).parent.mkdir(mode=0o700, exist_ok=True)
    # Another open file is, for flock, another holder: as another worker process would be.
    held = [passwords.slot_file(n).open("a") for n in range(passwords._HASHING_SLOTS)]
    try:
        for lock in held:
            fcntl.flock(lock, fcntl.LOCK_EX)
        hashing = asyncio.create_task(passwords.get_password_hash("a long passphrase"))
        await asyncio.sleep(0.5)
        assert not hashing.done()
    finally:
        for lock in held:
            lock.close()
    stored = await asyncio.wait_for(hashing, 30)
    assert (await passwords.verify_password("a long passphrase", stored))[0] is True
