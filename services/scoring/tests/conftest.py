"""Fixtures for the scoring domain tests: records built from the contract's example."""

from __future__ import annotations

import json
from functools import partial
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rnpc_shared.contracts.record import RecurrenceRecord

PROJECT_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_PATH = PROJECT_ROOT / "examples" / "recurrence_record.example.json"


@pytest.fixture(scope="session")
def example_dict() -> dict[str, Any]:
    return json.loads(EXAMPLE_PATH.read_text())


@pytest.fixture
def make_record(example_dict: dict[str, Any], record_builder) -> Callable[..., RecurrenceRecord]:  # noqa: ANN001
    """The example record with dotted-path overrides, e.g. {"recurrence.t_category": "T3"}."""
    return partial(record_builder, example_dict)
