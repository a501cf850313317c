"""Applying the age rules to everyone, after a deploy that changed the table of ages."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from models import ConsentActor, Database, Source
from resolvers import settings
from resolvers.consent import Provenance

logger = logging.getLogger("privacy_api.age_rules")


@dataclass(frozen=True)
class AgeRulesReport:
    """What a run did, in numbers only."""

    protected: int  # minors by today's rules whose withheld settings were switched back
    failed: int  # left as they were after an error; the next run tries again


async def apply_age_rules(database: Database) -> AgeRulesReport:
    """Protect every person the rules make a minor who still holds what a minor may not have.

    One transaction per account, so a run may be stopped and started again; a second run finds
    nobody left and writes nothing. Every event of a run carries the same request id, to find
    them together.
    """
    run = f"apply-age-rules-{uuid.uuid4().hex}"
    provenance = Provenance(ConsentActor.SYSTEM, Source.AGE_RULES, request_id=run)
    async with database.session() as session:
        minors = await settings.minors_to_protect(session)
    protected = failed = 0
    for account_id in minors:
        try:
            async with database.transaction() as session:
                written = await settings.protect_if_minor(session, account_id, provenance)
        except Exception:
            failed += 1
            logger.exception("Could not apply the age rules to account %s.", account_id)
            continue
        protected += written > 0
    return AgeRulesReport(protected=protected, failed=failed)
