"""`make bench`: the pipeline against the raw relay and HTTP against hello-world, one run, one broker.

Prints figures; asserts nothing about speed. Knobs (environment):
    BENCH_RELAY_RECORDS=2000   raw 4-hop relay records
    BENCH_BURST=2000           pipeline burst (records POSTed at once, BENCH_CONCURRENCY connections)
    BENCH_PACED_RATES=20,50,100 paced pipeline rates (records/s), each for BENCH_PACED_S seconds (20)
    BENCH_HTTP_RATE=100        paced HTTP rate (req/s), each target (hello-world, stored recommendation,
                               /v1/evaluate, CDS Hooks patient-view) for BENCH_HTTP_S seconds (30:
                               a p99 of 3,000 requests, not the 10th-worst of 1,000)
    BENCH_DEADLINE_S=900       longest wait for a phase's recommendations

Pipeline latency = gateway accepted the record → its recommendation stored in the gateway's read
model. Every call carries a bearer token minted once per run by the stack's dev issuer; CDS Hooks
calls each carry a fresh signed client JWT (pre-minted). CPU = user + system time from /proc/<pid>/stat of each service
process and the broker; the burst also prints the load generator's own (bodies are encoded before timing).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop

from benchmarks import harness as h
from benchmarks.cds_hooks import measure_cds_answer_time
from benchmarks.relay import PIPELINE_HOPS, event_sizes, relay
from rnpc_devstack.stack import free_port, stop_process, wait_for_port


CDS_PATIENT = "bench-cds-patient"


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run_relay(bootstrap: str, sizes: dict[str, int], count: int, broker_pid: int) -> tuple[float, float]:
    """records/s and CPU ms per record (this process + broker) of the raw relay."""
    hop_sizes = [sizes[topic] for topic in PIPELINE_HOPS]
    meter = h.CpuMeter({"relay": os.getpid(), "broker": broker_pid})
    rate = asyncio.run(relay(bootstrap, hop_sizes, count))
    cpu = meter.ms_per(count + 1)
    print(f"4-hop relay at {'/'.join(str(s) for s in hop_sizes)} bytes: {rate:.0f} records/s, "
          f"CPU {cpu['relay']:.2f} ms/record (clients) + {cpu['broker']:.2f} ms/record (broker)", flush=True)
    return rate, sum(cpu.values())


def run_burst(broker, stack, base: dict, count: int, concurrency: int, deadline_s: float, auth: dict[str, str]) -> tuple[float, float]:  # noqa: ANN001
    prefix = "burst-"
    sizes_before = {s: h.db_bytes(stack.urls[s]) for s in stack.urls}
    bodies = h.encoded_records(base, prefix, count)
    meter = h.CpuMeter(h.stack_pids(broker, stack) | {"load generator": os.getpid()})
    started = time.time()
    asyncio.run(h.post_burst(stack.base(), bodies, concurrency, auth))
    ingest_s = time.time() - started
    h.wait_done(stack, prefix, count, deadline_s)
    total_s = h.last_done_epoch_s(stack, prefix) - started
    cpu = meter.ms_per(count)
    sizes_after = {s: h.db_bytes(stack.urls[s]) for s in stack.urls}
    throughput = count / total_s
    print(f"burst of {count}: ingest {count / ingest_s:.0f} records/s; pipeline {throughput:.1f} records/s "
          f"(first POST → last recommendation {total_s:.1f} s)")
    print("end-to-end latency in the burst: " + h.fmt_ms(h.percentiles(h.end_to_end_s(stack, prefix)), ("p50", "p99", "max")))
    client_cpu = cpu.pop("load generator")
    total_cpu = sum(cpu.values())
    print("CPU ms per record: " + ", ".join(f"{name} {ms:.1f}" for name, ms in cpu.items()) + f"; total {total_cpu:.1f}"
          f" (the load generator, on the same 2 cores: {client_cpu:.1f})")
    per_db = {s: (sizes_after[s] - sizes_before[s]) / count for s in stack.urls}
    print("database bytes per record: " + ", ".join(f"{s} {b / 1024:.1f} KB" for s, b in per_db.items())
          + f"; total {sum(per_db.values()) / 1024:.1f} KB", flush=True)
    return throughput, total_cpu


def run_paced(stack, base: dict, rate: float, duration_s: float, deadline_s: float, auth: dict[str, str]) -> None:  # noqa: ANN001
    prefix = f"paced{int(rate)}-"
    bodies = [json.dumps(h.record(base, f"{prefix}{i}")).encode() for i in range(int(rate * duration_s))]
    result = uvloop.run(h.paced(stack.base(), "POST", "/v1/recurrences", rate_per_s=rate, duration_s=duration_s, bodies=bodies, headers=auth))
    accepted = result.statuses.get(202, 0)
    h.wait_done(stack, prefix, accepted, deadline_s)
    latencies = h.end_to_end_s(stack, prefix, in_acceptance_order=True)
    answered_s = len(bodies) / result.achieved_per_s
    # Kept up with, when the last records wait no longer than the first: a growing backlog shows here.
    tenth = max(1, len(latencies) // 10)
    first, last = (h.percentiles(part)["p50"] * 1000 for part in (latencies[:tenth], latencies[-tenth:]))
    print(f"paced {rate:.0f} records/s for {duration_s:.0f} s ({accepted} accepted; the last POST answered after {answered_s:.1f} s): "
          + h.fmt_ms(h.percentiles(latencies), ("p50", "p95", "p99"))
          + f"; p50 of the first tenth {first:.0f} ms, of the last tenth {last:.0f} ms", flush=True)


def http_figures(label: str, result: h.PacedResult) -> dict[str, float]:
    ok = result.latencies_with(200)
    stats = h.percentiles(ok)
    others = {s: n for s, n in result.statuses.items() if s != 200}
    print(f"{label}: {h.fmt_ms(stats, ('p50', 'p99'))} over {len(ok)} answered 200"
          + (f"; other statuses {others}" if others else ""), flush=True)
    return stats


def start_hello() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.hello:app", "--port", str(port), "--log-level", "warning", "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    wait_for_port(port, 30, process)
    return process, f"http://127.0.0.1:{port}"


def wrk(url: str, headers: dict[str, str] | None = None, seconds: int = 3) -> str:
    """Saturation figure from wrk (Debian), when installed: req/s and p99 with 8 connections."""
    if shutil.which("wrk") is None:
        return "wrk not installed"
    header_args = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", *header_args, url], capture_output=True, text=True, check=False).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non_2xx:
        return f"{non_2xx.group(1)} answers not 2xx (wrk)"
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    return f"{float(rps.group(1)):.0f} req/s, p99 {p99.group(1)}" if rps and p99 else "wrk output not understood"


def run_http(stack, base: dict, rate: float, duration_s: float, auth: dict[str, str], cds_key_dir: Path) -> None:  # noqa: ANN001
    hello, hello_url = start_hello()
    try:
        stored_path = "/v1/recurrences/bench-warm-up/recommendation"
        hello_stats = http_figures(
            f"hello-world GET at {rate:.0f} req/s", uvloop.run(h.paced(hello_url, "GET", "/hello", rate_per_s=rate, duration_s=duration_s))
        )
        stored_stats = http_figures(
            f"stored recommendation GET at {rate:.0f} req/s",
            uvloop.run(h.paced(stack.base(), "GET", stored_path, rate_per_s=rate, duration_s=duration_s, headers=auth)),
        )
        body = [json.dumps(h.record(base, "bench-evaluate")).encode()]
        evaluate_stats = http_figures(
            f"POST /v1/evaluate at {rate:.0f} req/s",
            uvloop.run(h.paced(stack.base(), "POST", "/v1/evaluate", rate_per_s=rate, duration_s=duration_s, bodies=body, headers=auth)),
        )
        cds = measure_cds_answer_time(stack.base(), CDS_PATIENT, cds_key_dir, rate_per_s=rate, duration_s=duration_s)
        print(f"CDS Hooks patient-view (stored recommendation, fresh signed JWT each) at {cds['rate_per_s']:.0f} req/s: "
              f"p50 {cds['p50_ms']:.1f} ms  p99 {cds['p99_ms']:.1f} ms over {cds['requests']:.0f} requests, "
              f"{cds['errors']:.0f} errors (target p99 <= 50 ms)", flush=True)
        print(f"p99 ratio to hello-world: stored recommendation {stored_stats['p99'] / hello_stats['p99']:.1f}x, "
              f"evaluate {evaluate_stats['p99'] / hello_stats['p99']:.1f}x, CDS Hooks {cds['p99_ms'] / 1000 / hello_stats['p99']:.1f}x")
        print(f"wrk saturation: hello-world {wrk(hello_url + '/hello')}; stored recommendation {wrk(stack.base() + stored_path, auth)}", flush=True)
    finally:
        stop_process(hello)


def main() -> None:
    relay_count = h.env_int("BENCH_RELAY_RECORDS", 2000)
    burst = h.env_int("BENCH_BURST", 2000)
    concurrency = h.env_int("BENCH_CONCURRENCY", 8)
    rates = [float(r) for r in os.environ.get("BENCH_PACED_RATES", "20,50,100").split(",") if r]
    paced_s = h.env_float("BENCH_PACED_S", 20)
    http_rate = h.env_float("BENCH_HTTP_RATE", 100)
    http_s = h.env_float("BENCH_HTTP_S", 30)
    deadline_s = h.env_float("BENCH_DEADLINE_S", 900)
    base = h.example_record()
    work = Path(tempfile.mkdtemp(prefix="rnpc-bench-"))
    print(f"rnpc bench (logs and databases in {work})", flush=True)
    broker, stack = h.start_stack(work)
    try:
        bench_started = time.perf_counter()
        auth = h.auth_headers(stack)
        client = httpx.Client(base_url=stack.base(), timeout=30, headers=auth)
        client.post("/v1/recurrences", json=h.record(base, "bench-warm-up")).raise_for_status()
        h.wait_done(stack, "bench-warm-up", 1, 180)
        # the CDS Hooks case: its own patient, so patient-view reads one stored recommendation
        client.post("/v1/recurrences", json=h.record(base, "bench-cds") | {"patient_ref": CDS_PATIENT}).raise_for_status()
        h.wait_done(stack, "bench-cds", 1, 180)
        print(f"cold start (first record, includes consumer group joins): {time.perf_counter() - bench_started:.1f} s")
        sizes = asyncio.run(event_sizes(broker.bootstrap_servers))
        print("event sizes (bytes): " + ", ".join(f"{topic} {size}" for topic, size in sizes.items()))

        section("raw 4-hop relay (same broker, same sizes)")
        relay_rate, relay_cpu = run_relay(broker.bootstrap_servers, sizes, relay_count, h.stack_pids(broker, stack)["broker"])
        section("pipeline burst")
        throughput, pipeline_cpu = run_burst(broker, stack, base, burst, concurrency, deadline_s, auth)
        print(f"ratio to the relay: throughput {throughput / relay_rate:.3f}x, CPU per record {pipeline_cpu / relay_cpu:.1f}x")
        section("pipeline paced latency (accepted → recommendation)")
        for rate in rates:
            run_paced(stack, base, rate, paced_s, deadline_s, auth)
        section("HTTP (paced, open loop, latency from the scheduled send time)")
        run_http(stack, base, http_rate, http_s, auth, h.cds_key_dir(work))
        print(f"\nbench time: {time.perf_counter() - bench_started:.0f} s", flush=True)
    finally:
        stack.stop()
        broker.stop()


if __name__ == "__main__":
    main()
