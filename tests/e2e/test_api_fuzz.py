"""A bounded schemathesis run over the authenticated public API: no input, valid or not, gets a 5xx.

Deterministic (derandomized, no example database) so it is not flaky; small so it stays quick.
The admin re-drive route is left out: it would re-send the shared stack's cases under other tests."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 12
NOT_FUZZED = {("POST", "/v1/admin/redrive")}


def test_no_server_error_for_any_generated_request(stack, auth_headers) -> None:  # noqa: ANN001
    schema = schemathesis.openapi.from_url(f"{stack.base()}/openapi.json")
    headers = auth_headers()  # every user scope, valid for an hour
    server_errors: list[str] = []
    calls: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = [op for op in operations if (op.method.upper(), op.path) not in NOT_FUZZED]
    assert any(op.path == "/v1/recurrences" for op in fuzzed)
    for operation in fuzzed:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case) -> None:  # noqa: ANN001
                response = case.call(base_url=stack.base(), headers=headers, timeout=60)
                calls.append(response.status_code)
                if response.status_code >= 500:
                    server_errors.append(f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:300]}")

            try:
                call()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # an operation with no input cannot be sent invalid input
    assert server_errors == []
    assert len(calls) >= len(fuzzed) * 2 and any(status < 300 for status in calls)  # it really called the API
