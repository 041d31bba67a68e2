"""Stored recommendation bytes and re-evaluation, end to end (real broker, databases, processes)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from rnpc_shared.db import make_engine
from rnpc_devstack.stack import wait_until

pytestmark = pytest.mark.integration


def _sql(database_url: str, sql: str, **params: Any) -> list[Any]:
    async def run() -> list[Any]:
        engine = make_engine(database_url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(sql), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _submit(stack, record: dict[str, Any], recurrence_id: str) -> bytes:  # noqa: ANN001
    body = copy.deepcopy(record) | {"recurrence_id": recurrence_id}
    httpx.post(f"{stack.base()}/v1/recurrences", json=body, headers=stack.auth_headers()).raise_for_status()
    return wait_until(lambda: _stored_bytes(stack, recurrence_id), 60, f"the recommendation of {recurrence_id}")


def _stored_bytes(stack, recurrence_id: str) -> bytes | None:  # noqa: ANN001
    response = httpx.get(f"{stack.base()}/v1/recurrences/{recurrence_id}/recommendation", headers=stack.auth_headers())
    return response.content if response.status_code == 200 else None


def test_stored_recommendation_is_served_as_the_stored_bytes(stack, example_record) -> None:  # noqa: ANN001
    served = _submit(stack, example_record, "bytes-1")
    [(stored,)] = _sql(stack.urls["gateway"], "SELECT body FROM recommendation_views WHERE recurrence_id = :r", r="bytes-1")
    assert served == stored.encode()


def test_reevaluate_supersedes_only_recommendations_issued_under_other_versions(stack, example_record) -> None:  # noqa: ANN001
    outdated_before = _submit(stack, example_record, "reeval-outdated")
    current_before = _submit(stack, example_record, "reeval-current")
    # As if "reeval-outdated" had been issued under earlier rules: both stores say so.
    _sql(stack.urls["recommendation"], "UPDATE recommendations SET rules_version = 'rules/old' WHERE recurrence_id = :r", r="reeval-outdated")
    _sql(stack.urls["gateway"], "UPDATE recommendation_views SET rules_version = 'rules/old' WHERE recurrence_id = :r", r="reeval-outdated")
    gateway = httpx.Client(base_url=stack.base(), timeout=30, headers=stack.auth_headers(["user/RecurrenceRecord.write", "user/Recommendation.read", "system/Admin.write"]))

    dry = gateway.post("/v1/admin/reevaluate", params={"dry_run": True}).raise_for_status().json()
    assert dry["cases"] == 1
    started = gateway.post("/v1/admin/reevaluate").raise_for_status().json()
    assert started["cases"] == 1
    rules_now = started["current"]["rules"]

    def finished() -> dict[str, Any] | None:
        report = gateway.get("/v1/admin/reevaluate", params={"since": started["started_at"]}).raise_for_status().json()
        return report if report["remaining"] == 0 and report["superseded"] == 1 else None

    report = wait_until(finished, 60, "the superseding recommendation")
    assert report["by_reason"] == {f"rules rules/old → {rules_now}": {"superseded": 1, "changed": 0}}
    outdated_after = _stored_bytes(stack, "reeval-outdated")
    assert outdated_after != outdated_before  # issued anew (new issued_at, today's rules)
    assert f'"rules":"{rules_now}"'.encode() in outdated_after
    [(kept,)] = _sql(stack.urls["gateway"], "SELECT body FROM superseded_recommendations WHERE recurrence_id = :r", r="reeval-outdated")
    assert kept.encode() == outdated_before
    assert _stored_bytes(stack, "reeval-current") == current_before  # its versions did not change
    assert gateway.post("/v1/admin/reevaluate", params={"dry_run": True}).json()["cases"] == 0
