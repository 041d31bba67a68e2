"""Shared parts of the benchmarks: the stack on SQLite, load generators, CPU and size meters."""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.loadgen import closed_loop, open_loop
from rnpc_devstack.stack import EmbeddedBroker, Stack
from rnpc_devstack.cds_token import ensure_dev_identity
from rnpc_shared.devissuer import DevIssuer

EXAMPLE_RECORD = Path(__file__).resolve().parents[1] / "examples" / "recurrence_record.example.json"
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def example_record() -> dict[str, Any]:
    return json.loads(EXAMPLE_RECORD.read_text())


def record(base: dict[str, Any], recurrence_id: str) -> dict[str, Any]:
    return copy.deepcopy(base) | {"recurrence_id": recurrence_id}


def cds_key_dir(work: Path) -> Path:
    """The bench's own CDS Hooks client identity (key + trusted-issuers.json the gateway reads)."""
    return work / "cds-dev"


def start_stack(work: Path) -> tuple[EmbeddedBroker, Stack]:
    """The stack in the dev profile: its own token issuer, and the bench's CDS client trusted."""
    ensure_dev_identity(cds_key_dir(work))
    broker = EmbeddedBroker().start(work / "broker.log")
    stack = Stack(
        broker=broker, new_database_url=lambda s: f"sqlite+aiosqlite:///{work / s}.db", log_dir=work, issuer_dir=work / "dev-issuer",
        env_overrides={"gateway": {"GATEWAY_CDS_TRUSTED_ISSUERS_FILE": str(cds_key_dir(work) / "trusted-issuers.json")}},
    )
    stack.start()
    return broker, stack


def auth_headers(stack: Stack, ttl_s: int = 6 * 3600) -> dict[str, str]:
    """One long-lived bearer token per run (every user scope, admin included), minted before timing."""
    assert stack.issuer_dir is not None
    return {"Authorization": f"Bearer {DevIssuer(stack.issuer_dir).mint(ttl_s=ttl_s)}"}


def db_path(database_url: str) -> str:
    return database_url.split(":///", 1)[1]


def query(database_url: str, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path(database_url), timeout=30) as connection:
        return connection.execute(sql, tuple(params)).fetchall()


def execute(database_url: str, sql: str, params: Iterable[Any] = ()) -> int:
    connection = sqlite3.connect(db_path(database_url), timeout=30)
    try:
        with connection:
            return connection.execute(sql, tuple(params)).rowcount
    finally:
        connection.close()


def db_bytes(database_url: str) -> int:
    """Bytes of live pages (WAL content included, free pages excluded)."""
    [(pages, free, page_size)] = query(
        database_url, "SELECT * FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
    )
    return (pages - free) * page_size


def recommendations_done(stack: Stack, prefix: str) -> int:
    [(count,)] = query(stack.urls["gateway"], "SELECT count(*) FROM recommendation_views WHERE recurrence_id LIKE ?", [prefix + "%"])
    return count


def _utc(value: str) -> datetime:
    """SQLite keeps the services' UTC timestamps without their zone."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def end_to_end_s(stack: Stack, prefix: str, *, in_acceptance_order: bool = False) -> list[float]:
    """Per record: gateway accepted → its recommendation stored in the gateway's read model
    (sorted by latency, or in the order the records were accepted)."""
    rows = query(
        stack.urls["gateway"],
        "SELECT r.received_at, v.received_at FROM record_versions r JOIN recommendation_views v "
        "ON v.recurrence_id = r.recurrence_id AND v.version = r.version WHERE r.recurrence_id LIKE ?",
        [prefix + "%"],
    )
    latencies = [(_utc(accepted), (_utc(done) - _utc(accepted)).total_seconds()) for accepted, done in rows]
    return [latency for _, latency in sorted(latencies)] if in_acceptance_order else sorted(latency for _, latency in latencies)


def last_done_epoch_s(stack: Stack, prefix: str) -> float:
    [(last,)] = query(stack.urls["gateway"], "SELECT max(received_at) FROM recommendation_views WHERE recurrence_id LIKE ?", [prefix + "%"])
    return _utc(last).timestamp()


def wait_done(stack: Stack, prefix: str, count: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while recommendations_done(stack, prefix) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{recommendations_done(stack, prefix)}/{count} recommendations after {deadline_s} s")
        if stack.failed():
            raise RuntimeError(f"services stopped: {stack.failed()}")
        time.sleep(0.25)  # polling the read model under a deadline


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": statistics.median(ordered), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1]}


def fmt_ms(stats: dict[str, float], keys: Iterable[str] = ("p50", "p95", "p99")) -> str:
    return "  ".join(f"{k} {stats[k] * 1000:.1f} ms" for k in keys)


# ---- load generators ---------------------------------------------------------------------------


async def post_burst(base_url: str, bodies: list[bytes], concurrency: int, headers: dict[str, str]) -> None:
    """POST every record (JSON bytes, encoded before timing) as fast as `concurrency` connections
    allow, with the lean client: the load generator's own CPU stays small beside the stack's."""
    statuses = await closed_loop(base_url + "/v1/recurrences", "POST", bodies, concurrency, headers)
    if set(statuses) - {200, 202}:
        raise RuntimeError(f"the burst was not all accepted: {statuses}")


def encoded_records(base: dict[str, Any], prefix: str, count: int) -> list[bytes]:
    return [json.dumps(record(base, f"{prefix}{i}")).encode() for i in range(count)]


@dataclass
class PacedResult:
    latencies_s: list[float]  # from each request's scheduled time (open loop: no coordinated omission)
    status_codes: list[int]  # per request, 0 when no answer
    achieved_per_s: float

    @property
    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for status in self.status_codes:
            counts[status] = counts.get(status, 0) + 1
        return counts

    def latencies_with(self, status: int) -> list[float]:
        return [latency for latency, code in zip(self.latencies_s, self.status_codes, strict=True) if code == status]


async def paced(
    base_url: str, method: str, path: str, *, rate_per_s: float, duration_s: float, bodies: list[bytes] | None = None,
    headers: dict[str, str] | list[dict[str, str]] | None = None,
) -> PacedResult:
    """Open-loop load: request i is sent at start + i/rate whatever the earlier ones are doing."""
    count = max(1, int(rate_per_s * duration_s))
    started = time.perf_counter()
    results = await open_loop(base_url + path, method, rate_per_s, count, bodies, headers)
    elapsed = time.perf_counter() - started
    return PacedResult([latency for latency, _ in results], [status for _, status in results], count / elapsed)


# ---- CPU ---------------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


class CpuMeter:
    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before = self.sample()

    def sample(self) -> dict[str, float]:
        return {name: cpu_s(pid) for name, pid in self.pids.items()}

    def ms_per(self, count: int) -> dict[str, float]:
        after = self.sample()
        return {name: (after[name] - self.before[name]) * 1000 / count for name in self.pids}


def stack_pids(broker: EmbeddedBroker, stack: Stack) -> dict[str, int]:
    pids = {service: process.pid for service, process in stack.processes.items()}
    assert broker.process is not None
    pids["broker"] = broker.process.pid
    return pids
