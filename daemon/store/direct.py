"""The store's hot statements, run on SQLite's own cursor.

Through SQLAlchemy Core a statement costs about 130 µs of Python here, however small
(the compiled form is cached, but every execution still builds an execution context,
a cache key and a result object); the same statement on the `sqlite3` cursor costs about
20 µs. A task run's end runs a dozen statements, so on SQLite the hottest ones
(`Tx.execution`, claiming, finishing, reading an execution's task runs, updates by id)
go straight to the driver, and everything else stays with SQLAlchemy.

A `Direct` is an ordinary SQLAlchemy statement, compiled once per dialect. Its
parameters and results pass through the column types' own processors (JSON through
the engine's serializer, booleans), so a row reads the same either way, and a driver
error is raised as SQLAlchemy's (`OperationalError`, `IntegrityError`), as callers
expect. On PostgreSQL, or any other dialect, a `Direct` runs through SQLAlchemy.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

Row = dict[str, Any]
Processor = Callable[[Any], Any] | None
_UNSET = object()


@dataclass(frozen=True)
class _Slot:
    """One `?` of the SQL: a parameter by key, or a value fixed in the statement."""

    key: str | None
    fixed: Any
    process: Processor


@dataclass(frozen=True)
class _Compiled:
    sql: str
    slots: tuple[_Slot, ...]
    keys: tuple[str, ...]
    """Result columns, in order (empty when the statement returns no rows)."""
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    """(index, processor) of the result columns that have one (JSON, booleans)."""


class Result:
    """What a direct statement gives back: rows as dicts, and the rows it changed."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[Row]:
        return self._rows

    def first(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def scalars(self) -> list[Any]:
        return [next(iter(row.values())) for row in self._rows]


class Direct:
    """`statement`, run on SQLite's cursor (compiled once per dialect)."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def execute(
        self, connection: Connection, parameters: Mapping[str, Any] | None = None
    ) -> Result:
        """Run with `parameters`; the returned rows are read at once."""
        dialect = connection.dialect
        if dialect.name != "sqlite":
            return self._through_sqlalchemy(connection, parameters or {})
        compiled = self._compiled_for(dialect)
        arguments = [_argument(slot, parameters or {}) for slot in compiled.slots]
        driver = connection.connection.driver_connection
        try:
            cursor = driver.execute(compiled.sql, arguments)  # type: ignore[union-attr]
            raw = cursor.fetchall() if compiled.keys else []
        except dialect.loaded_dbapi.Error as error:
            raise DBAPIError.instance(
                compiled.sql, arguments, error, dialect.loaded_dbapi.Error, dialect=dialect
            ) from error
        return Result(_rows(compiled, raw), cursor.rowcount)

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per parameter set in `rows` (an INSERT of many rows)."""
        dialect = connection.dialect
        if dialect.name != "sqlite":
            connection.execute(self.statement, list(rows))
            return
        compiled = self._compiled_for(dialect)
        arguments = [[_argument(slot, row) for slot in compiled.slots] for row in rows]
        driver = connection.connection.driver_connection
        try:
            driver.executemany(compiled.sql, arguments)  # type: ignore[union-attr]
        except dialect.loaded_dbapi.Error as error:
            raise DBAPIError.instance(
                compiled.sql, arguments, error, dialect.loaded_dbapi.Error, dialect=dialect
            ) from error

    def _through_sqlalchemy(self, connection: Connection, parameters: Mapping[str, Any]) -> Result:
        result = connection.execute(self.statement, dict(parameters))
        if not result.returns_rows:
            return Result([], result.rowcount)
        keys = list(result.keys())
        rows = [dict(zip(keys, row, strict=True)) for row in result]
        return Result(rows, result.rowcount)

    def _compiled_for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(dialect) or _compile(self.statement, dialect)
                self._compiled[dialect] = compiled
        return compiled


def _compile(statement: Any, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    sql: str = compiled.string
    slots: list[_Slot] = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        process = bind.type._cached_bind_processor(dialect)
        if bind.expanding:  # IN (…) of values fixed in the statement
            values = list(bind.value)
            if bind.callable is not None or not values:
                raise ValueError(f"{name}: only IN lists fixed in the statement run directly")
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", ", ".join("?" * len(values)), 1)
            slots += [_Slot(None, value, process) for value in values]
        elif bind.required:
            slots.append(_Slot(bind.key, _UNSET, process))
        else:
            slots.append(_Slot(None, bind.effective_value, process))
    if "__[POSTCOMPILE_" in sql:
        raise ValueError(f"a parameter is left to expand in {sql!r}")
    keys = tuple(column.keyname for column in compiled._result_columns)
    processors = tuple(
        (index, process)
        for index, column in enumerate(compiled._result_columns)
        if (process := column.type._cached_result_processor(dialect, None)) is not None
    )
    return _Compiled(sql, tuple(slots), keys, processors)


def _argument(slot: _Slot, parameters: Mapping[str, Any]) -> Any:
    value = slot.fixed if slot.key is None else parameters[slot.key]
    return value if slot.process is None else slot.process(value)


def _rows(compiled: _Compiled, raw: list[tuple[Any, ...]]) -> list[Row]:
    keys, processors = compiled.keys, compiled.processors
    if not processors:
        return [dict(zip(keys, row, strict=True)) for row in raw]
    rows = []
    for values in raw:
        converted = list(values)
        for index, process in processors:
            converted[index] = process(converted[index])
        rows.append(dict(zip(keys, converted, strict=True)))
    return rows


class DirectInsert:
    """An INSERT of whole rows into `table`: a column a row leaves out gets its default
    (as SQLAlchemy would give it), so that every row of a batch fills the same columns."""

    def __init__(self, table: Any) -> None:
        from sqlalchemy import bindparam, insert

        generated = table.autoincrement_column
        columns = [column for column in table.c if column is not generated]
        self.columns = frozenset(column.name for column in columns)
        self.defaults: Row = {
            column.name: column.default.arg
            if column.default is not None and column.default.is_scalar
            else None
            for column in columns
        }
        self.direct = Direct(
            insert(table).values({column.name: bindparam(column.name) for column in columns})
        )
        self.plain = insert(table)
        self.table = table

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        filled = []
        for row in rows:
            unknown = row.keys() - self.columns
            if unknown:
                raise ValueError(f"{self.table.name} has no column {', '.join(sorted(unknown))}")
            filled.append({**self.defaults, **row})
        if connection.dialect.name == "sqlite":
            self.direct.execute_many(connection, filled)
        else:
            connection.execute(self.plain, filled)
