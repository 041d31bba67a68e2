"""The relay's pass as `Units.steps` on a real database (SQLite; PostgreSQL in CI).

On PostgreSQL the claim and the mark share one transaction, so a row claimed by one relay stays
locked across its send: a second relay (another replica) skips it, and finds it again only if the
first one's pass ends without marking it. On SQLite each step commits on its own (one hop each);
a database file there has one relay.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlmodel import SQLModel

from rnpc_shared.contracts.events import new_event
from rnpc_shared.db import Units, make_engine
from rnpc_shared.kafka.outbox import _claim_rows, _claim_statement, _mark_rows, event_json, outbox_row
from rnpc_shared.kafka.tables import OUTBOX_TABLE, OutboxStatus

pytestmark = pytest.mark.integration

CLAIM = _claim_statement(10)


async def _outbox(databases: Any, label: str) -> tuple[str, list[uuid.UUID]]:  # noqa: ANN401 - the conftest factory
    """A fresh outbox with one pending event for each of two keys."""
    url = databases.new_url(label)
    engine = make_engine(url)
    events = [new_event(source="urn:test", type_="t", subject=key, data={"n": n}, correlation_id=None) for n, key in enumerate("ab")]
    async with engine.begin() as connection:
        await connection.run_sync(SQLModel.metadata.create_all, tables=[OUTBOX_TABLE])
        await connection.execute(OUTBOX_TABLE.insert(), [outbox_row("t", event) for event in events])
    await engine.dispose()
    return url, [uuid.UUID(event.id) for event in events]


async def _claimable(units: Units) -> set[uuid.UUID]:
    async with units.steps() as run:
        return {row.id for row in await run(_claim_rows, CLAIM)}


async def test_a_pass_claims_each_key_once_with_its_payload_bytes(databases) -> None:  # noqa: ANN001
    url, ids = await _outbox(databases, "steps-claim")
    relay = Units(url)
    try:
        async with relay.steps() as run:
            rows = await run(_claim_rows, CLAIM)
            assert {row.id for row in rows} == set(ids)
            assert all(isinstance(row.payload, bytes) and row.payload.startswith(b"{") for row in rows)
            await run(_mark_rows, [ids[0]], [(ids[1], {"attempts": 1, "last_error": "boom"})])
        assert await _claimable(relay) == {ids[1]}  # published is done; failed is pending again
    finally:
        await relay.close()


async def test_a_claimed_row_stays_locked_across_the_pass_on_postgresql(databases) -> None:  # noqa: ANN001
    url, ids = await _outbox(databases, "steps-lock")
    first, second = Units(url), Units(url)
    try:
        async with first.steps() as run:
            await run(_claim_rows, CLAIM)  # claimed; the send would be awaited here
            # Another replica's pass: on PostgreSQL the claimed rows are locked and skipped.
            seen_meanwhile = await _claimable(second)
            await run(_mark_rows, [ids[0]], [])
        if url.startswith("postgresql"):
            assert seen_meanwhile == set()
        else:  # SQLite: no locks (one relay per database file); each step is its own unit
            assert seen_meanwhile == set(ids)
        # After the pass: the published row is done, the other (not marked) is claimable again.
        assert await _claimable(second) == {ids[1]}
    finally:
        await first.close()
        await second.close()


def test_payload_bytes_are_the_serialised_event() -> None:
    event = new_event(source="urn:test", type_="t", subject="k", data={"note": "é ≥"}, correlation_id=None)
    row = outbox_row("t", event)
    assert row["payload"].encode() == event_json(event) and row["payload_bytes"] == len(event_json(event))
    assert row["status"] == OutboxStatus.pending
