"""The hot reads, run on the driver's own connection where that is safe.

Every request reads who is calling, and `me` reads the caller's settings: two statements whose
round trips cost less than what SQLAlchemy's execution around them costs (its cache key, the
parameters' processing, the result's metadata and rows; a benchmark measured twice the time of
the same statements sent by asyncpg alone). A `DriverRead` is a Core select built once: compiled
once per dialect to the driver's SQL, with the types' own bind and result processors, so its
rows are the rows SQLAlchemy would give.

It takes the driver's way only on PostgreSQL (asyncpg, which prepares each statement once per
connection), on a connection in autocommit (the read session's: no transaction of SQLAlchemy's
to begin first), and when nothing listens to the engine's statements: tracing's spans and the
tests' statement counts see every statement, as they run SQLAlchemy's way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

_DRIVER = "asyncpg"
_AUTOCOMMIT = "AUTOCOMMIT"
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    binds: tuple[Processor, ...]
    results: tuple[Processor, ...]


class DriverRead:
    """A select built once, run by the driver itself where it can be (see the module)."""

    def __init__(self, statement: Select[Unpack[tuple[Any, ...]]]) -> None:
        self.statement = statement
        self._compiled: dict[Dialect, _Compiled] = {}

    async def rows(
        self, connection: AsyncConnection, parameters: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """The statement's rows for `parameters`, as SQLAlchemy would give them."""
        dialect = connection.dialect
        sync = connection.sync_connection
        if (
            dialect.driver != _DRIVER
            or sync is None
            or connection.sync_engine.dispatch.before_cursor_execute
            or sync.get_execution_options().get("isolation_level") != _AUTOCOMMIT
        ):
            return (await connection.execute(self.statement, parameters)).all()
        compiled = self._compiled.get(dialect) or self._compile(dialect)
        raw = await connection.get_raw_connection()
        arguments = [
            parameters[name] if process is None else process(parameters[name])
            for name, process in zip(compiled.names, compiled.binds, strict=True)
        ]
        records = await raw.driver_connection.fetch(compiled.sql, *arguments)  # type: ignore[union-attr]
        results = compiled.results
        if not any(results):
            return [tuple(record) for record in records]
        return [
            tuple(
                value if process is None or value is None else process(value)
                for process, value in zip(results, record, strict=True)
            )
            for record in records
        ]

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        binds = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        )
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in self.statement.selected_columns
        )
        found = self._compiled[dialect] = _Compiled(str(compiled), names, binds, results)
        return found
