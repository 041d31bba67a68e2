"""Dev-only entrypoint: run a service with a fault injected, for the fault tests.

    RNPC_FAULT_KILL_AFTER_DB_COMMIT_MARKER=/tmp/m python -m rnpc_devstack.faulty recommendation

With that variable set, the process SIGKILLs itself right after its first consumer DB commit
(before the offset commit) and leaves the marker file behind; once the marker exists it runs
normally. The kill is patched in here, around the consumer's transaction step, so the service
packages that production images install carry no fault-injection code.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from rnpc_shared.kafka.consumer import EventConsumer

FAULT_ENV_PREFIX = "RNPC_FAULT_"
KILL_AFTER_DB_COMMIT_MARKER = FAULT_ENV_PREFIX + "KILL_AFTER_DB_COMMIT_MARKER"


def kill_after_first_db_commit(marker: Path) -> None:
    """Make every EventConsumer SIGKILL its process after its first committed transaction."""
    after_db_commit = EventConsumer._after_db_commit

    def kill_after_db_commit(self: EventConsumer) -> None:
        # Called once the inbox rows and the effects are committed; the offsets are committed later.
        if not marker.exists():
            marker.write_text(f"killed after DB commit at {datetime.now(UTC).isoformat()}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        after_db_commit(self)

    EventConsumer._after_db_commit = kill_after_db_commit  # type: ignore[method-assign]  # the injected fault


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m rnpc_devstack.faulty <service>")
    marker = os.environ.get(KILL_AFTER_DB_COMMIT_MARKER)
    if marker:
        kill_after_first_db_commit(Path(marker))
    runpy.run_module(f"rnpc_{sys.argv[1]}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
