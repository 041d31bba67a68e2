"""CDS Hooks answer time for a stored recommendation: open-loop load at a fixed rate, p50/p99.

Callable from `make bench` (issue 12 hands this to the bench owner):

    from benchmarks.cds_hooks import measure_cds_answer_time
    figures = measure_cds_answer_time(stack.base(), patient_id, issuers_file)  # {"p50_ms": .., "p99_ms": ..}

or alone against `make run` (after a Bundle for patient npc-early-local was posted):

    python -m benchmarks.cds_hooks http://127.0.0.1:8000 npc-early-local

Each request carries a fresh signed JWT (its jti is single-use), so JWT verification and the
replay check are part of the measured time, as in production. Target: p99 <= 50 ms at 100 req/s.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import uuid
from pathlib import Path

from benchmarks.loadgen import open_loop
from rnpc_devstack.cds_token import DEV_ISSUER, ensure_dev_identity, sign

SERVICE = "rnpc-patient-view"


async def _run(base_url: str, patient_id: str, key: dict, rate_per_s: float, duration_s: float) -> list[tuple[float, int]]:
    url = f"{base_url.rstrip('/')}/cds-services/{SERVICE}"
    # tokens signed before the clock starts: the client's signing cost is not the service's answer time
    total = int(rate_per_s * duration_s)
    tokens = [sign(key, iss=DEV_ISSUER, aud=url, lifetime_s=600) for _ in range(total)]
    bodies = [
        json.dumps({"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"userId": "Practitioner/bench", "patientId": patient_id}}).encode()
        for _ in range(total)
    ]
    # the lean open-loop generator (httpx would spend more CPU than the service on this machine)
    return await open_loop(url, "POST", rate_per_s, total, bodies, [{"Authorization": f"Bearer {token}"} for token in tokens])


def measure_cds_answer_time(base_url: str, patient_id: str, key_dir: Path | None = None, *, rate_per_s: float = 100, duration_s: float = 10) -> dict[str, float]:
    """p50/p99 (ms) of patient-view answers. The gateway must trust the dev issuer whose key is in
    `key_dir` (default .var/cds-dev, created if missing: point GATEWAY_CDS_TRUSTED_ISSUERS_FILE at
    its trusted-issuers.json)."""
    key = ensure_dev_identity(key_dir) if key_dir else ensure_dev_identity()
    results = asyncio.run(_run(base_url, patient_id, key, rate_per_s, duration_s))
    latencies = sorted(latency_s * 1000 for latency_s, status in results if status == 200) or [float("nan")]
    errors = sum(status != 200 for _, status in results)
    return {
        "requests": float(len(results)),
        "errors": float(errors),
        "rate_per_s": rate_per_s,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


if __name__ == "__main__":
    figures = measure_cds_answer_time(sys.argv[1], sys.argv[2])
    print(f"CDS Hooks patient-view (stored recommendation), {figures['requests']:.0f} requests at {figures['rate_per_s']:.0f}/s: "
          f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, {figures['errors']:.0f} errors (target p99 <= 50 ms)")
