"""What lives as long as the process, built once by the app and handed to every route."""

from __future__ import annotations

from dataclasses import dataclass

from auth.api_keys import KeyUsage
from auth.rate_limits import RateLimiter
from auth.sealing import Sealer
from auth.signing import ReceiptSigner
from auth.tokens import Signer
from models import Database
from privacy_api.config import Config, receipt_signing_key, webhook_sealer
from web import metrics, routes


@dataclass(frozen=True)
class Services:
    """The process's database, limits, keys and links (the GraphQL face reads them through
    `schema.context.Services`, which this satisfies)."""

    config: Config
    database: Database
    limiter: RateLimiter
    age_gate: Signer
    links: routes.PublicLinks
    receipts: ReceiptSigner
    key_usage: KeyUsage
    webhook_sealer: Sealer


def build_services(config: Config, database: Database | None = None) -> Services:
    """What lives as long as the process. A `database` given is the caller's, already watched
    (`metrics.watch_pool`); otherwise one is opened for `config`."""
    if database is None:
        database = Database(config.database_url, config.database_timeouts)
        metrics.watch_pool(database)
    metrics.count_consent_events()
    return Services(
        config=config,
        database=database,
        limiter=metrics.CountingRateLimiter(config.rate_limit_storage),
        age_gate=Signer(config.secret_key, purpose="age-gate"),
        links=routes.PublicLinks(config.public_url),
        receipts=ReceiptSigner(receipt_signing_key(config)),
        key_usage=KeyUsage(config.api_key_usage_flush_seconds),
        webhook_sealer=webhook_sealer(config),
    )
