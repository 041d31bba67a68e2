"""How SQLite answers a statement (EXPLAIN QUERY PLAN), for tests that a hot read or a periodic
pass is served by an index and not by a scan that grows with the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement


async def sqlite_query_plan(connection: AsyncConnection, statement: ClauseElement, params: dict[str, Any] | None = None) -> list[str]:
    """The plan's steps, e.g. `SEARCH outbox USING INDEX ix_… (status=? AND created_at<?)`."""
    # IN lists rendered as plain parameters: EXPLAIN takes the statement as SQLite will run it
    compiled = statement.compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True})
    assert isinstance(compiled, SQLCompiler)  # a statement, not DDL
    values = compiled.construct_params(params or {})
    rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(values[name] for name in compiled.positiontup or ()))
    return [row[-1] for row in rows]
