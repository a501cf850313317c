"""The purge loop: erase each account that is due in a transaction of its own, then prune."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from models import Database
from resolvers import erasure, visitors
from resolvers.erasure import Pruned, PurgeOutcome
from workers.mail_delivery import FolderMailer

logger = logging.getLogger("privacy_api.purge")


@dataclass(frozen=True)
class PurgeReport:
    """What a purge run did, in numbers only."""

    purged: int
    held: int  # due, but kept by a legal hold in force
    failed: int  # left intact after an error; the next run tries again
    # due, but its deletion notice is not sent yet (for up to erasure.NOTICE_MAX_WAIT)
    waiting: int = 0


async def purge_due_accounts(
    database: Database, secret_key: str, now: datetime, mail_dir: Path | None = None
) -> PurgeReport:
    """Erase every account whose deletion date has passed, that no legal hold keeps and whose
    deletion notice has been sent (or has waited long enough), leaving one last message to its
    address. With `mail_dir` (development, where mail is written there), the messages written
    to any address the account had go too.

    One transaction per account: an interruption leaves every account either erased or intact,
    and the next run picks up what is left. An account that fails is logged (by id) and left
    intact; the others go ahead.
    """
    async with database.session() as session:
        due = await erasure.due_for_purge(session, now)
    purged = held = failed = waiting = 0
    for account_id, is_held in due:
        if is_held:
            held += 1
            continue
        try:
            async with database.transaction() as session:
                addresses = await erasure.addresses_of(session, account_id)
                outcome = await erasure.purge_account(session, account_id, secret_key, now)
        except Exception:
            failed += 1
            logger.exception("Could not purge account %s; it is left intact.", account_id)
            continue
        if outcome is PurgeOutcome.ERASED and mail_dir is not None:
            await asyncio.to_thread(FolderMailer(mail_dir).forget, addresses)
        purged += outcome is PurgeOutcome.ERASED
        held += outcome is PurgeOutcome.HELD
        waiting += outcome is PurgeOutcome.WAITING
    return PurgeReport(purged=purged, held=held, failed=failed, waiting=waiting)


async def prune_expired(database: Database, now: datetime) -> Pruned:
    """Delete what has served its purpose, in one transaction."""
    async with database.transaction() as session:
        return await erasure.prune_expired(session, now)


async def purge_expired_visitors(database: Database, now: datetime, retention: timedelta) -> int:
    """Delete signed-out visitors whose last cookie choice is older than `retention`, with their
    ledgers, in one transaction. Returns how many went."""
    async with database.transaction() as session:
        return await visitors.purge_expired(session, now, retention)
