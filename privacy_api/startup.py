"""What a command checks before it starts: that the database and the shared rate-limit store answer.

Each check ends within a bounded wait and gives back one line that says what is wrong and which
setting to look at, so a misconfigured deploy fails at once with a message, not a traceback or a
process that hangs.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import make_url

from auth.rate_limits import RateLimiter
from models import Database
from privacy_api.config import Config

# How long a start waits for the rate-limit store to answer a PING.
RATE_LIMIT_STORE_WAIT = 5.0


def _reason(error: BaseException) -> str:
    """The driver's own words for a failure (never the SQL or its parameters)."""
    if isinstance(error, TimeoutError):
        return "no answer in time"
    original = getattr(error, "orig", None) or error.__cause__ or error
    words = str(original).strip().splitlines()
    return words[0][:200] if words else type(original).__name__


async def database_problem(config: Config) -> str | None:
    """None when the database answers within the connect timeout, else the line to print."""
    url = make_url(config.database_url)
    if url.get_backend_name() == "sqlite":
        return None  # a file the command creates; nothing to reach
    database = Database(config.database_url, config.database_timeouts)
    try:
        await database.check()
    except Exception as error:
        seconds = config.database_timeouts.connect
        where = url.render_as_string(hide_password=True)
        return (
            f"Database unreachable: {where} did not answer a query within {seconds:g} seconds "
            f"({_reason(error)}). Check PRIVACY_API_DATABASE_URL and that the server is running; "
            "PRIVACY_API_DB_CONNECT_TIMEOUT sets the wait."
        )
    finally:
        await database.dispose()
    return None


async def rate_limit_store_problem(config: Config) -> str | None:
    """None when the shared rate-limit store (if one is set) answers, else the line to print."""
    limiter = RateLimiter(config.rate_limit_storage)
    if await limiter.check(RATE_LIMIT_STORE_WAIT):
        return None
    where = make_url(config.rate_limit_storage).render_as_string(hide_password=True)
    return (
        f"Rate-limit store unreachable: {where} did not answer a PING (waited up to "
        f"{RATE_LIMIT_STORE_WAIT:g} seconds). Check PRIVACY_API_RATE_LIMIT_STORAGE and that the "
        "server is running."
    )


def problems(config: Config, *, rate_limits: bool) -> list[str]:
    """Every check that fails, as lines to print; empty when the command may start."""

    async def run() -> list[str]:
        found = [await database_problem(config)]
        if rate_limits:
            found.append(await rate_limit_store_problem(config))
        return [problem for problem in found if problem]

    return asyncio.run(run())
