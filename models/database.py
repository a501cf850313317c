"""The engine and the session factory: one engine per process, one transaction per unit of work.

`Database.transaction()` is the one place a transaction is committed or rolled back. Each edge
(a GraphQL mutation field, an HTTP route, one step of a CLI loop) opens one; the use cases it
calls only add and flush.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import QueuePool

# Set on the engine that write transactions use; SQLite then begins them IMMEDIATE.
_WRITES = "privacy_api_writes"


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is turned off, so that `_begin_sqlite` decides how each
    # transaction starts (and so that SAVEPOINTs work as SQLAlchemy expects).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _begin_sqlite(connection: Connection) -> None:
    """Writes take SQLite's write lock when they begin, waiting for it (busy_timeout) rather
    than failing when a read snapshot taken earlier would have to be upgraded; reads begin
    deferred and never block a writer."""
    immediate = connection.get_execution_options().get(_WRITES, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# A connection back from the pool after this long idle is tried before use: the server may have
# restarted or a network device dropped it meanwhile. One used moments ago is not: under load that
# would cost a round trip (three on asyncpg) per request. A connection that dies in use is
# reported as retryable (web/outage.py), and the pool then replaces every connection it holds.
IDLE_BEFORE_PING = 5.0
_CHECKED_IN_AT = "privacy_api_checked_in_at"


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_after_idle(dialect: Dialect) -> Callable[[Any, Any, Any], None]:
    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < IDLE_BEFORE_PING:
            return  # new, or used moments ago
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            # The pool throws this connection away and checks out another (a new one if need be).
            raise DisconnectionError("the connection did not answer a ping")

    return check


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long, in seconds, the API waits on the database before it gives up on a request."""

    connect: float = 10  # to open a connection, handshake included
    command: float = 15  # for any answer on an open connection (a dead link never answers)
    statement: float = 10  # for one statement to run, locks waited on included
    pool: float = 30  # for a free connection from the pool


# Connections kept open per process. A request uses one to read and one for each write, so under
# steady load a smaller pool would open and close overflow connections all the time.
POOL_SIZE = 20
POOL_OVERFLOW = 10


def _has_connection_queue(url: str) -> bool:
    # Only a queue of connections has a checkout to wait on (in-memory SQLite has one connection).
    parsed = make_url(url)
    dialect = parsed.get_dialect()
    return issubclass(dialect, DefaultDialect) and issubclass(
        dialect.get_pool_class(parsed), QueuePool
    )


def _timeout_arguments(url: str, timeouts: DatabaseTimeouts) -> dict[str, Any]:
    """The engine and driver arguments that bound every wait on the database."""
    parsed = make_url(url)
    arguments: dict[str, Any] = {}
    if _has_connection_queue(url):
        arguments["pool_timeout"] = timeouts.pool
    driver = parsed.get_driver_name()
    if driver == "asyncpg":
        arguments["connect_args"] = {
            "timeout": timeouts.connect,
            "command_timeout": timeouts.command,
            # The server ends the statement itself, and its locks with it, not only the client.
            "server_settings": {"statement_timeout": str(round(timeouts.statement * 1000))},
        }
    elif driver in ("aiosqlite", "pysqlite"):
        # sqlite3's timeout is its busy timeout: how long a write waits for another's lock.
        arguments["connect_args"] = {"timeout": timeouts.statement}
    return arguments


def create_engine(url: str, timeouts: DatabaseTimeouts | None = None) -> AsyncEngine:
    """The engine for `url`; with `timeouts`, no request waits on the database for longer."""
    bounds = _timeout_arguments(url, timeouts) if timeouts is not None else {}
    if _has_connection_queue(url):
        bounds.update(pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    # hide_parameters keeps emails and names out of error messages and logs.
    engine = create_async_engine(url, hide_parameters=True, **bounds)
    if _has_connection_queue(url):
        event.listen(engine.sync_engine, "checkin", _note_checkin)
        event.listen(engine.sync_engine, "checkout", _ping_after_idle(engine.dialect))
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        event.listen(engine.sync_engine, "begin", _begin_sqlite)
    return engine


class Database:
    """Owns the engine; hands out read sessions and write transactions."""

    def __init__(self, url: str, timeouts: DatabaseTimeouts | None = None) -> None:
        self.engine = create_engine(url, timeouts)
        self.timeouts = timeouts
        # Objects stay readable after commit: an edge answers from what its use case returned.
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # A request's reads, which never write: on PostgreSQL without BEGIN and ROLLBACK around
        # them (two round trips), as each statement sees its own snapshot under READ COMMITTED
        # either way. SQLite keeps its deferred BEGIN: a local call.
        self._read_engine = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql"
            else self.engine
        )
        self.reads = async_sessionmaker(self._read_engine, expire_on_commit=False, autoflush=False)
        self._writers = async_sessionmaker(
            self.engine.execution_options(**{_WRITES: True}), expire_on_commit=False
        )
        # The writers waiting their turn, by what they write to (see `transaction`).
        self._turns: weakref.WeakValueDictionary[Hashable, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reading. Whatever it reads is never committed."""
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self, turn: Hashable | None = None) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block ends, rolled back when it raises.

        Units of work of this process with the same `turn` (an account's id) run one after the
        other. Many changes to one account at once then queue here, holding no connection,
        instead of in the database behind the account's row lock, where each would hold a
        pooled connection and its wait would count towards the statement timeout: a burst of
        toggles from one person would end in timeouts rather than in turn.
        """
        if turn is None:
            async with self._writers() as session, session.begin():
                yield session
            return
        lock = self._turns.get(turn)
        if lock is None:
            lock = self._turns[turn] = asyncio.Lock()
        async with lock, self._writers() as session, session.begin():
            yield session

    async def read_connection(self) -> AsyncConnection:
        """A connection for reads, as a read session's (in autocommit on PostgreSQL); the
        caller closes it."""
        return await self._read_engine.connect()

    async def ping(self) -> bool:
        """True when the database answers a trivial query (within the connect timeout, if set)."""
        try:
            await self.check()
        except Exception:
            return False
        return True

    async def check(self) -> None:
        """Run a trivial query, raising what went wrong (TimeoutError after the connect timeout,
        if set): a database that accepts connections and never answers must not hang a start."""
        limit = self.timeouts.connect if self.timeouts is not None else None
        await asyncio.wait_for(self._select_one(), limit)

    async def _select_one(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
