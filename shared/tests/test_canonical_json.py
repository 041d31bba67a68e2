"""The canonical JSON every content hash and audit row hash is taken over: its text must never
change, or stored hashes stop verifying."""

import json

import pytest

from rnpc_shared.contracts.record import canonical_hash, canonical_json

VALUES = [
    {"b": [1, 2.5, None, True], "a": {"z": "é", "y": "line\u2028sep"}, "c": 'quote " and \\ slash'},
    {"seq": 7, "recorded_at": "2026-11-28T12:00:00.123456+00:00", "detail": None, "prev_hash": "0" * 64},
    [],
    "日本語",
    {"nested": [{"k": {"j": [3, 2, 1]}}]},
]


@pytest.mark.parametrize("value", VALUES)
def test_the_canonical_text_is_what_it_always_was(value: object) -> None:
    """Sorted keys, no spaces, non-ASCII kept: the options the stored hashes were taken with."""
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_a_pinned_value_keeps_its_text_and_hash() -> None:
    value = {"b": [1, None], "a": "é"}
    assert canonical_json(value) == '{"a":"é","b":[1,null]}'
    assert canonical_hash(value) == "3d92f6368f93f3cb36a4e7a721098054dfbfd705e31fa50409f2d99e0727a08c"
