"""Telling a database that is unreachable, too slow or busy from any other failure."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from sqlalchemy import exc

# PostgreSQL SQLSTATE codes (drivers expose them as `sqlstate`) for a database that cannot take
# the request now: class 08 connection exception, class 57 operator intervention (57014 is
# statement_timeout, 57P01-57P05 shutdowns, restarts and idle timeouts), too many connections,
# and a lock not obtained in time.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57")
_UNAVAILABLE_SQLSTATES = {"53300", "55P03"}
# SQLite: another connection held its lock past the busy timeout.
_UNAVAILABLE_SQLITE_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def is_unavailable(error: BaseException) -> bool:
    """True when `error` means the database could not answer in time, so the same request may
    succeed if retried later; False for every other failure, including bugs and bad data."""
    return any(_says_unavailable(cause) for cause in _causes(error))


def _says_unavailable(error: BaseException) -> bool:
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    # OSError covers refused and reset connections, unknown hosts and TimeoutError (a driver's
    # connect or command timeout); exc.TimeoutError is no free connection in the pool.
    if isinstance(error, OSError | exc.TimeoutError):
        return True
    if isinstance(error, sqlite3.OperationalError):
        return error.sqlite_errorcode & 0xFF in _UNAVAILABLE_SQLITE_CODES
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    return False


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error, what SQLAlchemy wrapped (`orig`) and what it was raised from (`__cause__`)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending.extend([orig if isinstance(orig, BaseException) else None, current.__cause__])
