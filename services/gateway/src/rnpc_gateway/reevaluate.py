"""`make reevaluate`: after a rules or evidence release, re-evaluate every case's latest version.

    python -m rnpc_gateway.reevaluate [--gateway http://127.0.0.1:8000] [--token T] [--dry-run] [--timeout-s 3600]

The bearer token needs the admin scope (system/Admin.write): --token, or the environment variable
RNPC_TOKEN (`make reevaluate` mints one with the dev issuer: make token SCOPES=system/Admin.write).

Starts the re-evaluation (POST /v1/admin/reevaluate), shows a progress bar while the pipeline
issues the superseding recommendations, then prints how many changed and why.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import httpx


def progress_bar(done: int, total: int, width: int = 40) -> str:
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def run(client: httpx.Client, *, dry_run: bool, timeout_s: float, poll_s: float = 2.0, out: Any = sys.stderr) -> dict[str, Any]:
    started = client.post("/v1/admin/reevaluate", params={"dry_run": dry_run})
    started.raise_for_status()
    start = started.json()
    total = start["cases"]
    if dry_run or total == 0:
        return {"started": start, "report": None}
    deadline = time.monotonic() + timeout_s
    shown = -1
    while True:
        report = client.get("/v1/admin/reevaluate", params={"since": start["started_at"]}).raise_for_status().json()
        done = max(0, total - report["remaining"])
        if done != shown:
            print("\r" + progress_bar(done, total), end="", file=out, flush=True)
            shown = done
        if report["remaining"] == 0 or time.monotonic() > deadline:
            print(file=out)
            return {"started": start, "report": report}
        time.sleep(poll_s)  # polling interval of a progress display


def main(argv: list[str] | None = None, transport: httpx.BaseTransport | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("RNPC_TOKEN", ""),
                        help="bearer token with the admin scope (default: $RNPC_TOKEN)")
    parser.add_argument("--dry-run", action="store_true", help="count the cases that would be re-evaluated")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a bearer token with the admin scope is required: --token or RNPC_TOKEN")
    headers = {"Authorization": f"Bearer {args.token}"}
    with httpx.Client(base_url=args.gateway, timeout=60, headers=headers, transport=transport) as client:
        result = run(client, dry_run=args.dry_run, timeout_s=args.timeout_s)
    start, report = result["started"], result["report"]
    current = start["current"]
    print(f"current versions: rules {current['rules']}, evidence {current['evidence']}")
    print(f"cases whose latest recommendation predates them: {start['cases']}" + (" (dry run)" if args.dry_run else ""))
    if report is not None:
        print(f"superseded: {report['superseded']}, advice changed: {report['changed']}, still pending: {report['remaining']}")
        for reason, tally in sorted(report["by_reason"].items()):
            print(f"  {reason}: {tally['superseded']} superseded, {tally['changed']} changed")
    if report is not None and report["remaining"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
