"""Retention runs every housekeeping pass in every service: on SQLite its search for finished
outbox rows must come from the (status, created_at) index, never a scan of the kept rows (each
holds a ~75 KB event: at 2,700 rows a scan cost ~90 ms per pass, and grows with the window)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlmodel import SQLModel

from rnpc_devstack.query_plan import sqlite_query_plan
from rnpc_shared.db import make_engine, utc_now
from rnpc_shared.kafka.outbox import finished_outbox_ids
from rnpc_shared.kafka.tables import OutboxEvent


async def test_finished_outbox_rows_are_found_through_the_status_index(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all, tables=[OutboxEvent.__table__])  # type: ignore[attr-defined]
        async with engine.connect() as connection:
            plan = await sqlite_query_plan(connection, finished_outbox_ids(utc_now() - timedelta(hours=1), 5000))
    finally:
        await engine.dispose()
    assert any("INDEX ix_outbox_status_created (status=? AND created_at<?)" in step for step in plan), plan
    assert not any(step.startswith("SCAN outbox") for step in plan), plan
