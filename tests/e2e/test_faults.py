"""Fault tests with fixed invariants: after a hard kill and restart, or a re-drive, every record
version has exactly one effect; after a clean restart, deliveries equal inputs."""

from __future__ import annotations

import asyncio
import copy
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from rnpc_shared.db import make_engine
from rnpc_devstack.faulty import KILL_AFTER_DB_COMMIT_MARKER
from rnpc_devstack.stack import stop_process, wait_until

pytestmark = pytest.mark.integration


def _post(stack, record: dict[str, Any], recurrence_id: str) -> None:  # noqa: ANN001
    record = copy.deepcopy(record) | {"recurrence_id": recurrence_id}
    response = httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=record)
    assert response.status_code == 202, response.text


def _has_recommendation(stack, recurrence_id: str) -> bool:  # noqa: ANN001
    return httpx.get(f"{stack.base()}/v1/recurrences/{recurrence_id}/recommendation", headers=stack.auth_headers()).status_code == 200


def _count(database_url: str, sql: str) -> int:
    async def run() -> int:
        engine = make_engine(database_url)
        try:
            async with engine.connect() as connection:
                return (await connection.execute(text(sql))).scalar_one()
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_kill_between_db_commit_and_offset_commit_gives_one_recommendation(new_stack, example_record, tmp_path: Path) -> None:  # noqa: ANN001
    marker = tmp_path / "recommendation-killed"
    stack = new_stack({"recommendation": {KILL_AFTER_DB_COMMIT_MARKER: str(marker)}})  # via rnpc_devstack.faulty
    _post(stack, example_record, "fault-kill-1")

    process = stack.processes["recommendation"]
    wait_until(lambda: process.poll() is not None, 60, "the recommendation service to kill itself")
    assert process.returncode == -signal.SIGKILL
    assert marker.exists()
    # Its DB transaction committed, its offset did not: the event(s) will be delivered again.
    # (The stage joins three small events and the evidence base; the first committed batch may hold
    # any of them.)
    assert _count(stack.urls["recommendation"], "SELECT count(*) FROM inbox") >= 1

    stack.start_service("recommendation")
    stack.wait_ready("recommendation")
    wait_until(lambda: _has_recommendation(stack, "fault-kill-1"), 60, "the recommendation after restart")
    wait_until(
        # recorded, scores, evidence and the evidence base: each once, however often delivered
        lambda: _count(stack.urls["recommendation"], "SELECT count(*) FROM inbox") == 4
        and _count(stack.urls["recommendation"], "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0,
        60,
        "the redelivery to be absorbed and the outbox drained",
    )
    assert _count(stack.urls["recommendation"], "SELECT count(*) FROM recommendations") == 1
    assert _count(stack.urls["recommendation"], "SELECT count(*) FROM outbox") == 1
    assert _count(stack.urls["gateway"], "SELECT count(*) FROM recommendation_views") == 1


def test_clean_restart_loses_nothing_and_duplicates_nothing(new_stack, example_record) -> None:  # noqa: ANN001
    stack = new_stack()
    ids = [f"clean-restart-{i}" for i in range(6)]
    for recurrence_id in ids[:3]:
        _post(stack, example_record, recurrence_id)
    stop_process(stack.processes["scoring"])  # SIGTERM: drain, commit, leave the group
    for recurrence_id in ids[3:]:
        _post(stack, example_record, recurrence_id)
    stack.start_service("scoring")
    stack.wait_ready("scoring")
    for recurrence_id in ids:
        wait_until(lambda r=recurrence_id: _has_recommendation(stack, r), 90, f"{recurrence_id}'s recommendation")
    assert _count(stack.urls["scoring"], "SELECT count(*) FROM inbox") == len(ids)
    assert _count(stack.urls["scoring"], "SELECT count(*) FROM score_sets") == len(ids)
    assert _count(stack.urls["recommendation"], "SELECT count(*) FROM recommendations") == len(ids)


def test_redrive_reuses_stored_results_and_issues_one_recommendation(new_stack, example_record) -> None:  # noqa: ANN001
    stack = new_stack()
    stop_process(stack.processes["scoring"])
    _post(stack, example_record, "redrive-1")
    redriven = httpx.post(f"{stack.base()}/v1/admin/redrive", headers=stack.auth_headers(), params={"older_than_s": 0}).json()["redriven"]
    assert redriven == [{"recurrence_id": "redrive-1", "version": 1}]
    stack.start_service("scoring")
    stack.wait_ready("scoring")
    wait_until(lambda: _has_recommendation(stack, "redrive-1"), 90, "the recommendation")
    # Two recorded events (original + re-drive), each passed down the chain, one result per stage:
    # the last stage reads both recorded, both scores and both evidence events (a re-emit each),
    # and the evidence base twice (announced with the first match, again with the re-emitted one:
    # a re-drive brings the base to a stage that lost it), stored once.
    wait_until(lambda: _count(stack.urls["recommendation"], "SELECT count(*) FROM inbox") == 8, 60, "every event at the last stage")
    assert _count(stack.urls["recommendation"], "SELECT count(*) FROM evidence_bases") == 1
    assert _count(stack.urls["evidence"], "SELECT count(*) FROM evidence_base_announcements") == 1
    assert _count(stack.urls["scoring"], "SELECT count(*) FROM score_sets") == 1
    assert _count(stack.urls["evidence"], "SELECT count(*) FROM evidence_matches") == 1
    assert _count(stack.urls["recommendation"], "SELECT count(*) FROM recommendations") == 1
    assert _count(stack.urls["gateway"], "SELECT count(*) FROM recommendation_views") == 1
    # Nothing left to re-drive once the recommendation exists.
    assert httpx.post(f"{stack.base()}/v1/admin/redrive", headers=stack.auth_headers(), params={"older_than_s": 0}).json()["redriven"] == []
