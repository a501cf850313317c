"""The baseline the API is measured against: a bare Starlette app, none of our code, that runs the
statements our API needs for each operation and answers the same JSON.

Served by uvicorn as the API is (same worker count), on the same database:

    BENCH_DATABASE_URL=postgresql+asyncpg://... BENCH_CATALOGUE=catalogue.json \\
        python -m benchmarks.baseline --port 8001 --workers 2

With more than one worker, uvicorn binds the listening socket itself, with protocol 0, and
asyncio then leaves Nagle's algorithm on for every accepted connection (it sets TCP_NODELAY
only on sockets that say IPPROTO_TCP): a response written in two parts waits for the client's
delayed ACK, about 40 ms on Linux. The baseline's socket says IPPROTO_TCP, so it shows what
the hardware can do; the API served with `uvicorn --workers 2` pays the 40 ms.

`BENCH_CATALOGUE` is the API's own `privacyCatalogue` answer, fetched by the bench over HTTP, so
the baseline renders every setting the API renders without importing the catalogue.

One route per operation, taking the same request body the GraphQL endpoint gets:
- `/typename`: `{ __typename }`, no database.
- `/me`: the session by token hash joined to its account row, then the account's settings rows.
- `/toggle`: the session, then in one transaction: lock the account row (the UPDATE that returns
  the ledger head), read the policy in force and the stored value, and when it differs, UPDATE the
  setting, INSERT the ledger event (with its hash) and UPDATE the ledger head. On PostgreSQL, as
  the API does, the lock also reads the policy, and the three writes are one statement (the
  inserts as data-modifying WITH clauses of the head's update).
- `/history`: the session, then one page of 20 events, newest first, from a cursor.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import socket
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.supervisors import Multiprocess

TOGGLED_KEY = "communication.email.newsletter"
PAGE_SIZE = 20
POOL_SIZE = 15  # SQLAlchemy's default: 5 connections kept, 10 more under load
LAST_USED_PRECISION = timedelta(minutes=5)
OLDEST_DIGITAL_CONSENT_AGE = 16

# The same statements our API sends (see the module docstring), in each database's dialect.
SESSION_SQL = (
    "SELECT s.id AS session_id, s.last_used_at, a.* FROM sessions s "
    "JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = {0} AND s.expires_at > {1}"
)
TOUCH_SQL = "UPDATE sessions SET last_used_at = {0} WHERE id = {1}"
SETTINGS_SQL = "SELECT key, value, updated_at FROM account_settings WHERE account_id = {0}"
LOCK_SQL = "UPDATE accounts SET updated_at = {0} WHERE id = {1} RETURNING ledger_seq, ledger_head"
POLICY_SQL = (
    "SELECT version, published_at, summary, material FROM policy_versions "
    "ORDER BY published_at DESC LIMIT 1"
)
STORED_SQL = "SELECT key, value FROM account_settings WHERE account_id = {0} AND key = {1}"
UPDATE_SETTING_SQL = (
    "UPDATE account_settings SET value = {0}, updated_at = {1} WHERE account_id = {2} AND key = {3}"
)
INSERT_SETTING_SQL = (
    "INSERT INTO account_settings (account_id, key, value, updated_at) VALUES ({0}, {1}, {2}, {3})"
)
INSERT_EVENT_SQL = (
    "INSERT INTO consent_events (account_id, seq, key, old_value, new_value, actor, actor_id, "
    "source, policy_version, occurred_at, request_id, prev_hash, hash) "
    "VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}, {11}, {12})"
)
HEAD_SQL = (
    "UPDATE accounts SET ledger_seq = {0}, ledger_head = {1}, updated_at = {2} WHERE id = {3}"
)
# PostgreSQL only: the lock with the policy in force, and every write of a change at once.
LOCK_WITH_POLICY_SQL = (
    "UPDATE accounts SET updated_at = $1 WHERE id = $2 RETURNING ledger_seq, ledger_head, "
    "(SELECT version FROM policy_versions ORDER BY published_at DESC LIMIT 1) AS version"
)
WRITE_SQL = (
    "WITH setting AS (INSERT INTO account_settings (account_id, key, value, updated_at) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, key) DO UPDATE "
    "SET value = excluded.value, updated_at = excluded.updated_at), "
    "event AS (INSERT INTO consent_events (account_id, seq, key, old_value, new_value, actor, "
    "actor_id, source, policy_version, occurred_at, request_id, prev_hash, hash) "
    "VALUES ($1, $5, $2, $6, $3, $7, $8, $9, $10, $4, $11, $12, $13)) "
    "UPDATE accounts SET ledger_seq = $5, ledger_head = $13, updated_at = $4 WHERE id = $1"
)
HISTORY_SQL = (
    "SELECT * FROM consent_events WHERE account_id = {0} AND seq < {1} ORDER BY seq DESC LIMIT {2}"
)


def _dialect(statement: str, marker: Callable[[int], str]) -> str:
    return statement.format(*(marker(number) for number in range(1, 14)))


class Store(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def actor(self, token_hash: str, now: datetime) -> dict[str, Any] | None: ...
    async def settings(self, account_id: Any) -> list[dict[str, Any]]: ...
    async def history(self, account_id: Any, before: int) -> list[dict[str, Any]]: ...
    async def toggle(
        self, account_id: Any, key: str, new: str, default: str, request_id: str
    ) -> None: ...


def event_hash(prev_hash: str | None, fields: list[Any]) -> str:
    payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{prev_hash or ''}|{payload}".encode()).hexdigest()


class Postgres:
    """asyncpg with a pool; reads outside a transaction, the toggle inside one."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None
        marker = "${}".format
        self.sql = {name: _dialect(statement, marker) for name, statement in _STATEMENTS.items()}

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=5, max_size=POOL_SIZE)

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        assert self.pool is not None
        async with self.pool.acquire() as connection:
            yield connection

    async def _actor(self, connection: asyncpg.Connection, token_hash: str, now: datetime) -> Any:
        row = await connection.fetchrow(self.sql["session"], token_hash, now)
        if row is not None and now - row["last_used_at"] > LAST_USED_PRECISION:
            await connection.execute(self.sql["touch"], now, row["session_id"])
        return dict(row) if row is not None else None

    async def actor(self, token_hash: str, now: datetime) -> dict[str, Any] | None:
        async with self._connection() as connection:
            return await self._actor(connection, token_hash, now)  # type: ignore[no-any-return]

    async def settings(self, account_id: Any) -> list[dict[str, Any]]:
        async with self._connection() as connection:
            return [dict(row) for row in await connection.fetch(self.sql["settings"], account_id)]

    async def history(self, account_id: Any, before: int) -> list[dict[str, Any]]:
        async with self._connection() as connection:
            rows = await connection.fetch(self.sql["history"], account_id, before, PAGE_SIZE + 1)
        return [dict(row) for row in rows]

    async def toggle(
        self, account_id: Any, key: str, new: str, default: str, request_id: str
    ) -> None:
        async with self._connection() as connection, connection.transaction():
            now = datetime.now(UTC)
            head = await connection.fetchrow(LOCK_WITH_POLICY_SQL, now, account_id)
            stored = await connection.fetchrow(self.sql["stored"], account_id, key)
            old = stored["value"] if stored is not None else default
            if old == new:
                return
            seq = head["ledger_seq"] + 1
            fields = _event_fields(seq, key, old, new, head["version"], now, request_id)
            digest = event_hash(head["ledger_head"], fields)
            await connection.execute(
                WRITE_SQL,
                account_id,
                key,
                new,
                now,
                seq,
                old,
                "person",
                None,
                "api",
                head["version"],
                request_id,
                head["ledger_head"],
                digest,
            )


class _SqlitePool:
    """At most `size` aiosqlite connections, opened as needed, with the pragmas our engine sets."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size
        self.opened = 0
        self.idle: asyncio.LifoQueue[aiosqlite.Connection] = asyncio.LifoQueue()
        self.everything: list[aiosqlite.Connection] = []

    async def _open(self) -> aiosqlite.Connection:
        connection = await aiosqlite.connect(self.path)
        connection.row_factory = sqlite3.Row
        for pragma in ("foreign_keys=ON", "journal_mode=WAL", "busy_timeout=5000"):
            await connection.execute(f"PRAGMA {pragma}")
        self.everything.append(connection)
        return connection

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[aiosqlite.Connection]:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            connection = await self._open()
        else:
            connection = await self.idle.get()
        try:
            yield connection
        finally:
            self.idle.put_nowait(connection)

    async def close(self) -> None:
        for connection in self.everything:
            await connection.close()


def _sqlite_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class Sqlite:
    """aiosqlite; the toggle's first UPDATE opens the write transaction, as in our engine."""

    def __init__(self, path: str) -> None:
        self.pool = _SqlitePool(path, POOL_SIZE)
        self.sql = {
            name: _dialect(statement, lambda _: "?") for name, statement in _STATEMENTS.items()
        }

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.pool.close()

    async def actor(self, token_hash: str, now: datetime) -> dict[str, Any] | None:
        async with self.pool.acquire() as connection:
            rows = await connection.execute_fetchall(
                self.sql["session"], (token_hash, _sqlite_time(now))
            )
            if not rows:
                return None
            row = dict(next(iter(rows)))
            if now - _parse_time(row["last_used_at"]) > LAST_USED_PRECISION:
                await connection.execute(self.sql["touch"], (_sqlite_time(now), row["session_id"]))
                await connection.commit()
            return row

    async def settings(self, account_id: Any) -> list[dict[str, Any]]:
        async with self.pool.acquire() as connection:
            rows = await connection.execute_fetchall(self.sql["settings"], (account_id,))
        return [dict(row) for row in rows]

    async def history(self, account_id: Any, before: int) -> list[dict[str, Any]]:
        async with self.pool.acquire() as connection:
            rows = await connection.execute_fetchall(
                self.sql["history"], (account_id, before, PAGE_SIZE + 1)
            )
        return [dict(row) for row in rows]

    async def toggle(
        self, account_id: Any, key: str, new: str, default: str, request_id: str
    ) -> None:
        async with self.pool.acquire() as connection:
            try:
                now = datetime.now(UTC)
                at = _sqlite_time(now)
                head = next(
                    iter(await connection.execute_fetchall(self.sql["lock"], (at, account_id)))
                )
                policy = next(iter(await connection.execute_fetchall(self.sql["policy"])))
                stored = list(
                    await connection.execute_fetchall(self.sql["stored"], (account_id, key))
                )
                old = stored[0]["value"] if stored else default
                if old == new:
                    await connection.commit()
                    return
                if stored:
                    await connection.execute(self.sql["update_setting"], (new, at, account_id, key))
                else:
                    await connection.execute(self.sql["insert_setting"], (account_id, key, new, at))
                seq = head["ledger_seq"] + 1
                fields = _event_fields(seq, key, old, new, policy["version"], now, request_id)
                digest = event_hash(head["ledger_head"], fields)
                values = (account_id, seq, key, old, new, "person", None, "api")
                await connection.execute(
                    self.sql["insert_event"],
                    (*values, policy["version"], at, request_id, head["ledger_head"], digest),
                )
                await connection.execute(
                    self.sql["head"], (seq, digest, _sqlite_time(datetime.now(UTC)), account_id)
                )
                await connection.commit()
            except BaseException:
                await connection.rollback()
                raise


_STATEMENTS = {
    "session": SESSION_SQL,
    "touch": TOUCH_SQL,
    "settings": SETTINGS_SQL,
    "lock": LOCK_SQL,
    "policy": POLICY_SQL,
    "stored": STORED_SQL,
    "update_setting": UPDATE_SETTING_SQL,
    "insert_setting": INSERT_SETTING_SQL,
    "insert_event": INSERT_EVENT_SQL,
    "head": HEAD_SQL,
    "history": HISTORY_SQL,
}


def _event_fields(
    seq: int, key: str, old: str, new: str, policy: str, now: datetime, request_id: str
) -> list[Any]:
    moment = now.astimezone(UTC).isoformat(timespec="microseconds")
    return [seq, key, old, new, "person", None, "api", policy, moment, request_id]


def _iso(value: Any) -> str | None:
    return None if value is None else _parse_time(value).isoformat()


def _day(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, date) else value


def _uuid(value: Any) -> str:
    return str(value) if not isinstance(value, str) else str(uuid.UUID(value))


def _is_minor(birth: Any, today: date) -> bool:
    if birth is None:
        return False
    born = birth if isinstance(birth, date) else date.fromisoformat(birth)
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return years < OLDEST_DIGITAL_CONSENT_AGE


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


class Renderer:
    """The `me` JSON from the account row and its settings rows, as the API renders it."""

    def __init__(self, catalogue: list[dict[str, Any]]) -> None:
        self.catalogue = catalogue

    def _current(self, setting: dict[str, Any], stored: dict[str, Any]) -> tuple[Any, Any]:
        text, updated_at = stored.get(setting["key"], (setting["defaultValue"], None))
        value: Any = text if setting["kind"] == "AUDIENCE" else text == "true"
        return value, _iso(updated_at)

    def me(self, account: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        stored = {row["key"]: (row["value"], row["updated_at"]) for row in rows}
        now = datetime.now(UTC)
        groups: dict[str, list[tuple[dict[str, Any], Any, Any]]] = {}
        for setting in self.catalogue:
            groups.setdefault(setting["group"], []).append(
                (setting, *self._current(setting, stored))
            )
        visibility = {
            _camel(s["key"].split(".", 1)[1]): value for s, value, _ in groups["VISIBILITY"]
        }
        cookies = {s["cookieCategory"]: value for s, value, _ in groups["COOKIES"]}
        cookie_times = [changed for _, _, changed in groups["COOKIES"] if changed is not None]
        expires = account["email_token_expires_at"]
        return {
            "id": _uuid(account["id"]),
            "email": account["email"],
            "displayName": account["display_name"],
            "phone": account["phone"],
            "birthDate": _day(account["birth_date"]),
            "country": account["country"],
            "isMinor": _is_minor(account["birth_date"], now.date()),
            "role": account["role"].upper(),
            "locale": account["locale"],
            "pendingEmail": account["pending_email"]
            if expires is not None and _parse_time(expires) > now
            else None,
            "acceptedPolicyVersion": account["accepted_policy_version"],
            "createdAt": _iso(account["created_at"]),
            "communicationPreferences": [
                {
                    "channel": s["channel"],
                    "topic": s["topic"],
                    "enabled": value,
                    "locked": s["locked"],
                    "updatedAt": changed,
                }
                for s, value, changed in groups["COMMUNICATION"]
            ],
            "dataSharing": [
                {
                    "purpose": s["purpose"],
                    "enabled": value,
                    "description": s["description"],
                    "updatedAt": changed,
                }
                for s, value, changed in groups["DATA_SHARING"]
            ],
            "visibility": visibility,
            "cookieConsent": {
                "strictlyNecessary": cookies["STRICTLY_NECESSARY"],
                "functional": cookies["FUNCTIONAL"],
                "analytics": cookies["ANALYTICS"],
                "advertising": cookies["ADVERTISING"],
                "gpcApplied": account["gpc_applied_at"] is not None,
                "updatedAt": max(cookie_times, default=None),
            },
        }


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"consent:{seq}".encode()).decode()


def _before(cursor: str | None) -> int:
    if not cursor:
        return 2**31 - 1
    return int(base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")[2])


def _history(rows: list[dict[str, Any]]) -> dict[str, Any]:
    edges = [
        {
            "cursor": _cursor(row["seq"]),
            "node": {
                "id": str(row["id"]),
                "key": row["key"],
                "oldValue": row["old_value"],
                "newValue": row["new_value"],
                "actor": row["actor"].upper(),
                "source": row["source"].upper(),
                "policyVersion": row["policy_version"],
                "occurredAt": _iso(row["occurred_at"]),
                "requestId": row["request_id"],
            },
        }
        for row in rows[:PAGE_SIZE]
    ]
    return {
        "edges": edges,
        "pageInfo": {
            "hasNextPage": len(rows) > PAGE_SIZE,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _token_hash(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return hashlib.sha256(token.strip().encode()).hexdigest()


def create_app() -> Starlette:
    url = os.environ["BENCH_DATABASE_URL"]
    catalogue = json.loads(Path(os.environ["BENCH_CATALOGUE"]).read_text())
    store: Store
    if url.startswith("postgresql"):
        store = Postgres(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    else:
        store = Sqlite(url.split(":///", 1)[1])
    renderer = Renderer(catalogue)
    toggled_default = next(s["defaultValue"] for s in catalogue if s["key"] == TOGGLED_KEY)

    async def signed_in(
        request: Request, answer: Callable[[dict[str, Any], dict[str, Any]], Awaitable[Any]]
    ) -> Any:
        variables = json.loads(await request.body()).get("variables") or {}
        token_hash = _token_hash(request)
        actor = await store.actor(token_hash, datetime.now(UTC)) if token_hash else None
        return None if actor is None else await answer(actor, variables)

    async def typename(request: Request) -> JSONResponse:
        json.loads(await request.body())
        return JSONResponse({"data": {"__typename": "Query"}})

    async def me(request: Request) -> JSONResponse:
        async def answer(actor: dict[str, Any], _: dict[str, Any]) -> Any:
            return renderer.me(actor, await store.settings(actor["id"]))

        return JSONResponse({"data": {"me": await signed_in(request, answer)}})

    async def history(request: Request) -> JSONResponse:
        async def answer(actor: dict[str, Any], variables: dict[str, Any]) -> Any:
            rows = await store.history(actor["id"], _before(variables.get("after")))
            return {"consentHistory": _history(rows)}

        return JSONResponse({"data": {"me": await signed_in(request, answer)}})

    async def toggle(request: Request) -> JSONResponse:
        async def answer(actor: dict[str, Any], variables: dict[str, Any]) -> Any:
            new = "true" if variables["on"] else "false"
            await store.toggle(actor["id"], TOGGLED_KEY, new, toggled_default, uuid.uuid4().hex)
            return {"errors": []}

        payload = await signed_in(request, answer)
        if payload is None:
            return JSONResponse({"data": None, "errors": [{"message": "not signed in"}]})
        return JSONResponse({"data": {"setCommunicationPreference": payload}})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.start()
        yield
        await store.stop()

    return Starlette(
        routes=[
            Route("/typename", typename, methods=["POST"]),
            Route("/me", me, methods=["POST"]),
            Route("/history", history, methods=["POST"]),
            Route("/toggle", toggle, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


class _Config(uvicorn.Config):
    def bind_socket(self) -> socket.socket:
        """The socket uvicorn binds, as one that says it is TCP (see the module docstring)."""
        return socket.socket(fileno=super().bind_socket().detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    arguments = parser.parse_args()
    config = _Config(
        "benchmarks.baseline:create_app",
        factory=True,
        host="127.0.0.1",
        port=arguments.port,
        workers=arguments.workers,
        access_log=False,
        log_level="warning",
    )
    if arguments.workers > 1:  # as uvicorn.run does it
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
