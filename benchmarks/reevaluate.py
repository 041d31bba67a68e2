"""`make bench-reevaluate`: re-evaluation of N cases after a rules release (default 10,000).

Seeds N cases through the pipeline, marks their recommendations as issued under earlier rules
(what a rules release means to the stores), then runs what `make reevaluate` runs (progress bar)
and prints the time, the throughput and the report. Knobs: BENCH_REEVALUATE_RECORDS (10000),
BENCH_CONCURRENCY (8), BENCH_DEADLINE_S (3600). Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import harness as h
from rnpc_gateway.reevaluate import run


def main() -> None:
    count = h.env_int("BENCH_REEVALUATE_RECORDS", 10_000)
    deadline_s = h.env_float("BENCH_DEADLINE_S", 3600)
    base = h.example_record()
    work = Path(tempfile.mkdtemp(prefix="rnpc-bench-reevaluate-"))
    print(f"re-evaluation benchmark: {count} cases (logs and databases in {work})", flush=True)
    broker, stack = h.start_stack(work)
    try:
        seeded = time.perf_counter()
        auth = h.auth_headers(stack)
        bodies = h.encoded_records(base, "reeval-", count)
        asyncio.run(h.post_burst(stack.base(), bodies, h.env_int("BENCH_CONCURRENCY", 8), auth))
        h.wait_done(stack, "reeval-", count, deadline_s)
        print(f"seeded {count} cases through the pipeline in {time.perf_counter() - seeded:.1f} s", flush=True)
        # A rules release: every stored recommendation now predates the rules in force.
        h.execute(stack.urls["recommendation"], "UPDATE recommendations SET rules_version = 'rules/previous'")
        h.execute(stack.urls["gateway"], "UPDATE recommendation_views SET rules_version = 'rules/previous'")
        meter = h.CpuMeter(h.stack_pids(broker, stack))
        started = time.perf_counter()
        with httpx.Client(base_url=stack.base(), timeout=120, headers=auth) as client:
            result = run(client, dry_run=False, timeout_s=deadline_s)
        elapsed_s = time.perf_counter() - started
        report = result["report"]
        cpu = meter.ms_per(count)
        print(f"re-evaluated {result['started']['cases']} cases in {elapsed_s:.1f} s ({count / elapsed_s:.1f} cases/s); "
              f"superseded {report['superseded']}, advice changed {report['changed']}, still pending {report['remaining']}")
        for reason, tally in sorted(report["by_reason"].items()):
            print(f"  {reason}: {tally['superseded']} superseded, {tally['changed']} changed")
        print("CPU ms per case: " + ", ".join(f"{name} {ms:.1f}" for name, ms in cpu.items()) + f"; total {sum(cpu.values()):.1f}")
    finally:
        stack.stop()
        broker.stop()


if __name__ == "__main__":
    main()
