"""Pipeline benchmark: prints throughput and end-to-end latency figures (never asserted in tests).

    make bench                      # 100 records, SQLite, embedded broker
    BENCH_RECORDS=500 make bench

Latency = gateway `received_at` → recommendation `issued_at` (both stamped by the services).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from rnpc_devstack.stack import EmbeddedBroker, Stack, repo_root, wait_until


def main() -> None:
    count = int(os.environ.get("BENCH_RECORDS", "100"))
    record = json.loads((repo_root() / "examples" / "recurrence_record.example.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="rnpc-bench-"))
    broker = EmbeddedBroker().start(work / "broker.log")
    stack = Stack(broker=broker, new_database_url=lambda s: f"sqlite+aiosqlite:///{work / s}.db", log_dir=work, issuer_dir=work / "dev-issuer")
    try:
        stack.start()
        client = httpx.Client(base_url=stack.base(), timeout=30, headers=stack.auth_headers())
        # Cold start: the first record also waits for every consumer group's first join (~5 s on Tansu).
        cold_started = time.perf_counter()
        client.post("/v1/recurrences", json=copy.deepcopy(record) | {"recurrence_id": "bench-warm-up"}).raise_for_status()
        wait_until(lambda: client.get("/v1/recurrences/bench-warm-up/recommendation").status_code == 200, 120, "warm-up")
        print(f"cold start (first record, includes consumer group joins): {time.perf_counter() - cold_started:.2f} s")
        received: dict[str, datetime] = {}
        started = time.perf_counter()
        for i in range(count):
            body = copy.deepcopy(record) | {"recurrence_id": f"bench-{i}"}
            response = client.post("/v1/recurrences", json=body)
            response.raise_for_status()
            received[body["recurrence_id"]] = datetime.fromisoformat(response.json()["received_at"])
        ingest_s = time.perf_counter() - started
        latencies_s: list[float] = []
        for recurrence_id, received_at in received.items():
            body = wait_until(
                lambda r=recurrence_id: (x := client.get(f"/v1/recurrences/{r}/recommendation")).status_code == 200 and x.json(),
                300,
                recurrence_id,
            )
            latencies_s.append((datetime.fromisoformat(body["issued_at"]) - received_at).total_seconds())
        total_s = time.perf_counter() - started
        latencies_s.sort()
        print(f"records (steady state, after the warm-up): {count}")
        print(f"ingest (POST /v1/recurrences, sequential): {count / ingest_s:.1f} records/s")
        print(f"pipeline throughput (first POST → last recommendation): {count / total_s:.1f} records/s")
        print(
            "end-to-end latency s: "
            f"p50 {statistics.median(latencies_s):.3f}  p95 {latencies_s[int(0.95 * (count - 1))]:.3f}  max {latencies_s[-1]:.3f}"
        )
    finally:
        stack.stop()
        broker.stop()


if __name__ == "__main__":
    main()
