"""Tests marked deploy_tools need promtool, kubectl, docker-compose and hadolint. `make test`
deselects them (they are not installed by it); deploy/validate.sh installs the tools and runs
them with RNPC_DEPLOY_TOOLS=1, where a missing tool is a failure, never a skip."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The shared facts module (agreed names and lists) is imported by every deploy test.
sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("RNPC_DEPLOY_TOOLS") == "1":
        return
    deselected = [item for item in items if item.get_closest_marker("deploy_tools")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("deploy_tools")]
