"""Stage parts (rnpc_shared.kafka.stage_inputs) on a real database (SQLite; PostgreSQL in CI).

The parts are Core statements in the consumer's unit of work, so what the ORM used to make a
no-op must stay one: a part re-sent by a re-drive is kept once, and a version's parts are only
ever joined when they are for the same record content.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlmodel import Session, SQLModel

from rnpc_shared.contracts.events import RecordRef
from rnpc_shared.contracts.scores import ScoringParameters
from rnpc_shared.db import Units, make_engine
from rnpc_shared.kafka import stage_inputs
from rnpc_shared.kafka.consumer import ProvenanceError
from rnpc_shared.kafka.tables import STAGE_INPUT_TABLE

pytestmark = pytest.mark.integration

REF = RecordRef(recurrence_id="case-1", version=1, content_hash="a" * 64)
OTHER_CONTENT = REF.model_copy(update={"content_hash": "b" * 64})
PART = ScoringParameters()  # any validated model stands for a part here


async def _units(databases: Any, label: str) -> Units:  # noqa: ANN401 - the conftest factory
    url = databases.new_url(label)
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(SQLModel.metadata.create_all, tables=[STAGE_INPUT_TABLE])
    await engine.dispose()
    return Units(url)


def _in_session(unit: Any) -> Any:  # noqa: ANN401
    def run(connection: Connection) -> Any:  # noqa: ANN401
        with Session(bind=connection) as session:
            return unit(session)

    return run


def _count(session: Session) -> int:
    return session.connection().execute(select(func.count()).select_from(STAGE_INPUT_TABLE)).scalar_one()


async def test_a_part_sent_twice_is_kept_once_and_joined_with_the_next(databases) -> None:  # noqa: ANN001
    units = await _units(databases, "parts")
    try:
        def keep_record(session: Session) -> int:
            parts = stage_inputs.gather(session, REF, "record", PART)
            stage_inputs.keep(session, parts)
            return _count(session)

        assert await units.run(_in_session(keep_record)) == 1
        assert await units.run(_in_session(keep_record)) == 1  # a re-drive's copy: nothing more kept

        def join(session: Session) -> tuple[bool, Any, str | None, int]:
            parts = stage_inputs.gather(session, REF, "scores", PART, "c" * 64)
            complete = parts.has("record", "scores")
            kept = parts.model("record", ScoringParameters)
            stage_inputs.discard(session, REF)
            return complete, kept, parts.result_hash("scores"), _count(session)

        complete, kept, result_hash, left = await units.run(_in_session(join))
        assert complete and kept == PART and result_hash == "c" * 64
        assert left == 0
    finally:
        await units.close()


async def test_parts_of_different_record_contents_are_never_joined(databases) -> None:  # noqa: ANN001
    units = await _units(databases, "provenance")
    try:
        await units.run(_in_session(lambda session: stage_inputs.keep(session, stage_inputs.gather(session, REF, "record", PART))))
        with pytest.raises(ProvenanceError, match="is for content"):
            await units.run(_in_session(lambda session: stage_inputs.gather(session, OTHER_CONTENT, "scores", PART)))
    finally:
        await units.close()


async def test_held_parts_are_taken_once_by_prefix(databases) -> None:  # noqa: ANN001
    units = await _units(databases, "held")
    try:
        def hold_two(session: Session) -> int:
            stage_inputs.hold(session, REF, "held:evi:one", '{"n": 1}')
            stage_inputs.hold(session, REF, "held:evi:one", '{"n": 1}')  # the same event again
            stage_inputs.hold(session, REF, "held:rec:two", '{"n": 2}')
            return _count(session)

        assert await units.run(_in_session(hold_two)) == 2

        def take(session: Session) -> tuple[list[tuple[str, str]], list[tuple[str, str]], int]:
            first = [(row.part, row.data) for row in stage_inputs.take(session, REF, "held:evi:")]
            again = [(row.part, row.data) for row in stage_inputs.take(session, REF, "held:evi:")]
            return first, again, _count(session)

        first, again, left = await units.run(_in_session(take))
        assert first == [("held:evi:one", '{"n": 1}')]
        assert again == []
        assert left == 1  # the other stage's held part stays
    finally:
        await units.close()
