"""`Prepared` on a real database gives what `Connection.execute` gives: values stored the same way
(through their types' bind processors), a literal and a repeated parameter bound right."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.engine import Connection

from rnpc_gateway.tables import AuditChainHead, AuditEntry
from rnpc_shared.db import Prepared, Units
from rnpc_devstack.stack import migrate

pytestmark = pytest.mark.integration

_ENTRIES = AuditEntry.__table__  # type: ignore[attr-defined]
_HEAD = AuditChainHead.__table__  # type: ignore[attr-defined]


def _row(seq: int) -> dict[str, object]:
    return {
        "seq": seq, "recorded_at": datetime(2026, 11, 28, 9, 30, 15, 123456, tzinfo=UTC), "action": "read", "route": "GET /x",
        "subject": "dr-a", "client_id": None, "recurrence_id": "case-1", "version": 2, "status": 200, "detail": None,
        "correlation_id": "c", "purpose_of_use": None, "prev_hash": f"{seq - 1:064d}", "row_hash": f"{seq:064d}",
    }  # fmt: skip


def _compare(connection: Connection) -> None:
    connection.execute(insert(_ENTRIES), [_row(1)])  # SQLAlchemy's way
    Prepared(insert(_ENTRIES), column_keys=list(_row(2))).executemany(connection, [_row(2), _row(3)])
    stored = connection.execute(text("SELECT seq, CAST(recorded_at AS TEXT) FROM audit_events ORDER BY seq")).all()
    assert [when for _seq, when in stored] == [stored[0][1]] * 3  # the same value in the column

    advance = Prepared(update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + 5).returning(_HEAD.c.seq))
    before = connection.execute(select(_HEAD.c.seq).where(_HEAD.c.id == 1)).scalar_one()
    assert advance.execute(connection, {}) == [(before + 5,)]  # the literal id 1 is bound

    case = bindparam("case")  # used twice: one value in both places, whatever the paramstyle
    same_case_twice = Prepared(select(_ENTRIES.c.seq).where((_ENTRIES.c.recurrence_id == case) & (_ENTRIES.c.route != case)).order_by(_ENTRIES.c.seq))
    assert same_case_twice.execute(connection, {"case": "case-1"}) == [(1,), (2,), (3,)]
    assert same_case_twice.execute(connection, {"case": "case-2"}) == []


async def _in_a_unit(url: str) -> None:
    units = Units(url)  # SQLite's own connection on a thread; asyncpg through run_sync on PostgreSQL
    try:
        await units.run(_compare)
    finally:
        await units.close()


def test_prepared_statements_bind_and_store_as_execute_does(databases) -> None:  # noqa: ANN001
    url = databases.new_url("prepared")
    migrate("gateway", url)
    asyncio.run(_in_a_unit(url))
