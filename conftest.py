"""Fixtures shared by every test suite of the workspace (service unit tests and tests/)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from rnpc_shared.contracts.record import RecurrenceRecord

RecordBuilder = Callable[[dict[str, Any], dict[str, Any] | None], RecurrenceRecord]


def record_with_overrides(base: dict[str, Any], overrides: dict[str, Any] | None = None) -> RecurrenceRecord:
    """`base` with dotted-path overrides, e.g. {"recurrence.t_category": "T3"}, validated.

    A value of None sets the field to null (for an optional section, removes it)."""
    data = copy.deepcopy(base)
    for path, value in (overrides or {}).items():
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return RecurrenceRecord.model_validate(data)


@pytest.fixture(scope="session")
def record_builder() -> RecordBuilder:
    return record_with_overrides
