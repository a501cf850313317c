"""The hot statements, run on the driver's own connection where that is safe.

Every request reads who is calling; `me` reads the caller's settings; a change locks the
account, reads the values it changes and writes its rows in one statement. Each round trip
costs less than what SQLAlchemy's execution around it costs (its cache key, the parameters'
processing, the result's metadata and rows, a greenlet switch): a benchmark measured twice the
time of the same statements sent by asyncpg alone. A `DriverStatement` is a Core statement
built once: compiled once per dialect to the driver's SQL, with the types' own bind and result
processors, so its rows are the rows SQLAlchemy would give, and its errors are SQLAlchemy's.

It takes the driver's way only on PostgreSQL (asyncpg, which prepares each statement once per
connection), on a connection in autocommit or inside a transaction SQLAlchemy began (the driver
then begins it on the server first, as SQLAlchemy's adapter would), when the statement has no
parameter expanded at execution (IN lists) nor default computed in Python, and when nothing
listens to the engine's statements: tracing's spans and the tests' statement counts see every
statement, as they run SQLAlchemy's way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, UpdateBase, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_DRIVER = "asyncpg"
_AUTOCOMMIT = "AUTOCOMMIT"
# What the driver path uses of SQLAlchemy's asyncpg adapter: the lock it holds around each
# statement, the server transaction it began (None before its first statement), and how it
# begins one. An adapter without them is run SQLAlchemy's way.
_ADAPTER_PARTS = ("_execute_mutex", "_transaction", "_start_transaction", "_connection")
_REQUIRED = object()
Processor = Callable[[Any], Any] | None
Statement = Select[*tuple[Any, ...]] | UpdateBase


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    # The value a parameter takes when it is not given: a literal the statement was built with.
    defaults: tuple[Any, ...]
    binds: tuple[Processor, ...]
    # The columns whose values are processed, with their processors.
    results: tuple[tuple[int, Callable[[Any], Any]], ...]


class DriverStatement:
    """A statement built once, run by the driver itself where it can be (see the module)."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        # None for a dialect the driver's way does not take this statement on.
        self._compiled: dict[Dialect, _Compiled | None] = {}

    async def rows(
        self, connection: AsyncConnection, parameters: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """The statement's rows for `parameters` (none for a statement that returns none), as
        SQLAlchemy would give them."""
        dialect = connection.dialect
        sync = connection.sync_connection
        compiled = self._compiled[dialect] if dialect in self._compiled else self._compile(dialect)
        if (
            compiled is None
            or sync is None
            # Its pooled connection is read as an attribute below: only while it holds one.
            or sync.invalidated
            or sync.closed
            or connection.sync_engine.dispatch.before_cursor_execute
            or not (
                sync.in_transaction()
                or sync.get_execution_options().get("isolation_level") == _AUTOCOMMIT
            )
        ):
            return await self._through_sqlalchemy(connection, parameters)
        adapter: Any = sync.connection.dbapi_connection
        if not _takes(adapter):
            return await self._through_sqlalchemy(connection, parameters)
        arguments = []
        for name, default, process in zip(
            compiled.names, compiled.defaults, compiled.binds, strict=True
        ):
            value = parameters.get(name, default)
            if value is _REQUIRED:
                raise KeyError(f"no value for the parameter {name!r}")
            arguments.append(value if process is None else process(value))
        try:
            async with adapter._execute_mutex:
                if adapter._transaction is None:  # no-op in autocommit
                    await adapter._start_transaction()
                records = await adapter._connection.fetch(compiled.sql, *arguments)
        except Exception as error:
            raised = _as_sqlalchemy_error(error, adapter, compiled.sql, dialect)
            if isinstance(raised, exc.DBAPIError) and raised.connection_invalidated:
                # As SQLAlchemy does on a lost connection: never handed out again.
                await connection.invalidate()
            raise raised from error
        if not compiled.results:
            return records
        rows = []
        for record in records:
            row = list(record)
            for index, process in compiled.results:
                value = row[index]
                if value is not None:
                    row[index] = process(value)
            rows.append(row)
        return rows

    async def _through_sqlalchemy(
        self, connection: AsyncConnection, parameters: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        result = await connection.execute(self.statement, parameters)
        return result.all() if result.returns_rows else []

    def _compile(self, dialect: Dialect) -> _Compiled | None:
        found: _Compiled | None = None
        if dialect.driver == _DRIVER:
            compiled = self.statement.compile(dialect=dialect)
            names = tuple(compiled.positiontup or ())
            parameters = [compiled.binds[name] for name in names]
            # Parameters expanded at execution (IN lists), or defaults computed in Python before
            # it (a column's `default` or `onupdate` callable): SQLAlchemy's way fills them in.
            prefetched = compiled.insert_prefetch or compiled.update_prefetch
            if not prefetched and not any(parameter.expanding for parameter in parameters):
                binds = tuple(
                    parameter.type.dialect_impl(dialect).bind_processor(dialect)
                    for parameter in parameters
                )
                # A select's columns, or what an insert, update or delete returns.
                processors = (
                    column.type.dialect_impl(dialect).result_processor(dialect, None)
                    for column in self.statement.exported_columns
                )
                results = tuple(
                    (index, process)
                    for index, process in enumerate(processors)
                    if process is not None
                )
                defaults = tuple(
                    _REQUIRED if parameter.required else parameter.effective_value
                    for parameter in parameters
                )
                found = _Compiled(str(compiled), names, defaults, binds, results)
        self._compiled[dialect] = found
        return found


async def connection_of(reader: AsyncSession | AsyncConnection) -> AsyncConnection:
    """The connection a session reads on (the session's own, begun), or the connection given."""
    return await reader.connection() if isinstance(reader, AsyncSession) else reader


# Whether adapters of a class have what the driver's way uses of them, as the first one had.
_TAKEN: dict[type, bool] = {}


def _takes(adapter: Any) -> bool:
    kind = type(adapter)
    found = _TAKEN.get(kind)
    if found is None:
        found = _TAKEN[kind] = all(hasattr(adapter, part) for part in _ADAPTER_PARTS)
    return found


def _as_sqlalchemy_error(
    error: Exception, adapter: Any, sql: str, dialect: Dialect
) -> BaseException:
    """The error SQLAlchemy would raise: the driver's error as its adapter words it (an
    IntegrityError for a unique violation, its SQLSTATE kept), wrapped as SQLAlchemy wraps it."""
    try:
        adapter._handle_exception(error)
    except Exception as translated:
        dbapi = dialect.loaded_dbapi
        if isinstance(translated, dbapi.Error):
            return exc.DBAPIError.instance(
                sql,
                None,
                translated,
                dbapi.Error,
                hide_parameters=True,
                connection_invalidated=dialect.is_disconnect(translated, adapter, None),
                dialect=dialect,
                ismulti=False,
            )
        return translated
    return error
