"""A concurrency limit that refuses at once instead of queueing: overload answers 503 + Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rnpc_shared.problems import ProblemError


class ConcurrencyLimit:
    """At most `limit` holders at a time; one event loop, so a plain counter is enough."""

    def __init__(self, name: str, limit: int, retry_after_s: int) -> None:
        self.name = name
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.in_flight >= self.limit:
            raise ProblemError(
                503,
                "Too many concurrent requests",
                f"{self.name} is computing {self.in_flight} requests (limit {self.limit}); retry after {self.retry_after_s} s",
                type_="https://rnpc.example/problems/overloaded",
                headers={"Retry-After": str(self.retry_after_s)},
                limit=self.limit,
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
