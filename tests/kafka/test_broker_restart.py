"""Broker restart for real: Apache Kafka is SIGKILLed in the middle of a load and restarted on the
same log directory. Every accepted record gets exactly one recommendation, with the gateway's
re-drive switched off: nothing the broker acknowledged is lost, nothing is processed twice.

(Apache Kafka only: the embedded broker keeps its data in memory, so there a restart is a loss that
only the re-drive repairs; tests/e2e/test_faults.py covers that.)"""

from __future__ import annotations

import asyncio
import copy
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from rnpc_shared.contracts.events import TOPIC_EVIDENCE_BASE
from rnpc_shared.db import make_engine
from rnpc_shared.kafka.access import SERVICE_ACCESS
from rnpc_devstack.stack import wait_until

pytestmark = pytest.mark.integration

RECORDS = 1000
KILL_AFTER = 400  # accepted records before the SIGKILL: the pipeline is busy with them
RESTART_AFTER = 600  # records accepted while the broker is down (the gateway's outbox keeps them)
POSTING_THREADS = 4
DRAIN_DEADLINE_S = 1200  # a loaded 2-core machine; the assertion is on counts, never on time
NO_REDRIVE = {"GATEWAY_REDRIVE_AFTER_S": "86400", "GATEWAY_REDRIVE_INTERVAL_S": "86400"}


def _counts(database_url: str, queries: dict[str, str]) -> dict[str, int]:
    async def run() -> dict[str, int]:
        engine = make_engine(database_url)
        try:
            async with engine.connect() as connection:
                return {name: (await connection.execute(text(sql))).scalar_one() for name, sql in queries.items()}
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result()


def _post_all(client: httpx.Client, record: dict[str, Any], ids: list[str]) -> None:
    def post(recurrence_id: str) -> None:
        response = client.post("/v1/recurrences", json=copy.deepcopy(record) | {"recurrence_id": recurrence_id})
        assert response.status_code == 202, response.text
        assert response.json()["outcome"] == "new"

    with ThreadPoolExecutor(max_workers=POSTING_THREADS) as pool:
        list(pool.map(post, ids))


def test_sigkill_and_restart_of_the_broker_mid_load_gives_one_recommendation_per_record(new_stack, example_record) -> None:  # noqa: ANN001
    stack = new_stack({"gateway": NO_REDRIVE})
    broker = stack.broker
    ids = [f"broker-restart-{i:04d}" for i in range(RECORDS)]
    started = time.monotonic()
    with httpx.Client(base_url=stack.base(), timeout=60, headers=stack.auth_headers()) as client:
        _post_all(client, example_record, ids[:KILL_AFTER])
        before_kill = _counts(stack.urls["gateway"], {"recommended": "SELECT count(*) FROM recommendation_views"})
        broker.kill()  # SIGKILL: no controlled shutdown, no flush beyond what the OS already has
        _post_all(client, example_record, ids[KILL_AFTER:RESTART_AFTER])  # accepted while it is down
        broker.restart()  # same ports, same log directory
        _post_all(client, example_record, ids[RESTART_AFTER:])
    print(f"\nbroker SIGKILLed with {before_kill['recommended']}/{KILL_AFTER} records recommended")

    wait_until(
        lambda: _counts(stack.urls["gateway"], {"n": "SELECT count(*) FROM recommendation_views"})["n"] >= RECORDS,
        DRAIN_DEADLINE_S,
        f"a recommendation for each of the {RECORDS} records",
    )
    # Let the last stage's outbox drain, so a late duplicate would have had its chance to show.
    wait_until(
        lambda: _counts(stack.urls["recommendation"], {"n": "SELECT count(*) FROM outbox WHERE published_at IS NULL"})["n"] == 0,
        120,
        "the recommendation outbox to drain",
    )
    print(f"{RECORDS} records through a broker SIGKILL + restart in {time.monotonic() - started:.0f} s")

    gateway = _counts(
        stack.urls["gateway"],
        {
            "records": "SELECT count(*) FROM record_versions",
            "recommended": "SELECT count(DISTINCT recurrence_id) FROM recommendation_views",
            "views": "SELECT count(*) FROM recommendation_views",
            "redrives": "SELECT coalesce(sum(redrive_count), 0) FROM record_versions",
            "recorded_events": "SELECT count(*) FROM outbox",
            "dead_letters": "SELECT count(*) FROM dead_letter_notices",
        },
    )
    assert gateway == {
        "records": RECORDS, "recommended": RECORDS, "views": RECORDS,
        "redrives": 0,  # no record needed a re-drive: the broker kept what it had acknowledged
        "recorded_events": RECORDS,  # one recorded event per record, none re-sent by a re-drive
        "dead_letters": 0,
    }
    for service, table in (("scoring", "score_sets"), ("evidence", "evidence_matches"), ("recommendation", "recommendations")):
        counts = _counts(
            stack.urls[service],
            {
                "results": f"SELECT count(*) FROM {table}",
                "events_handled": "SELECT count(*) FROM inbox",  # distinct event ids: duplicates were no-ops
                "events_emitted": "SELECT count(*) FROM outbox",
            },
        )
        # Small events: a stage handles one event per record and topic it joins (evidence: recorded +
        # scores, ...), plus the evidence base once (one evidence version), which evidence emits once.
        access = SERVICE_ACCESS[service]
        per_record = [topic for topic in access.consumes if topic != TOPIC_EVIDENCE_BASE]
        handled = RECORDS * len(per_record) + (TOPIC_EVIDENCE_BASE in access.consumes)
        emitted = RECORDS + (TOPIC_EVIDENCE_BASE in access.owns)
        assert counts == {"results": RECORDS, "events_handled": handled, "events_emitted": emitted}, service
