"""A lean open-loop HTTP/1.1 load generator (keep-alive connections, plain asyncio streams).

httpx costs more CPU per request than the servers under test, which would measure the client;
this one reads a response by its Content-Length and nothing else. Loopback only.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit


KEEP_ALIVE_S = 4.0  # below uvicorn's 5 s keep-alive: an older idle connection may be closing


class _Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # A connection the server closed (or soon will, idle too long) would fail the request it
        # carries: that is the client's fault, not the server's answer, so it is never used.
        while self.idle:
            returned_at, reader, writer = self.idle.pop()
            if not reader.at_eof() and time.perf_counter() - returned_at < KEEP_ALIVE_S:
                return reader, writer
            writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened.append(writer)
        return reader, writer

    def give_back(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.idle.append((time.perf_counter(), reader, writer))

    def close(self) -> None:
        for writer in self.opened:
            writer.close()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, str | None]:
    """Send one request, read its response; (status, Retry-After header or None)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, retry_after = 0, None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"retry-after":
            retry_after = value.strip().decode()
    await reader.readexactly(length)
    return status, retry_after


@contextmanager
def collector_paused() -> Iterator[None]:
    """The timed window without the load generator's own garbage collections: latency is taken on
    this side, and a full collection of the bench's heap (60-90 ms measured here, more on a larger
    heap) would be counted as the server's answer time for every request due meanwhile. Collected
    before the window, not during it."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_request(url: str, method: str, body: bytes | None, headers: dict[str, str] | None = None) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    head = f"{method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return parts.hostname or "127.0.0.1", parts.port or 80, (head + "\r\n").encode() + (body or b"")


async def open_loop(
    url: str, method: str, rate_per_s: float, count: int, bodies: list[bytes] | None = None,
    headers: dict[str, str] | list[dict[str, str]] | None = None,
) -> list[tuple[float, int]]:
    """Send request i at start + i/rate on a free keep-alive connection (a new one if none is free);
    per request (seconds from its scheduled time to the end of its response, status; 0 = failed).
    Request i takes body i and headers i modulo their counts (a list of headers: e.g. one token each)."""
    header_sets = headers if isinstance(headers, list) else [headers or {}]
    body_sets: list[bytes | None] = list(bodies) if bodies else [None]
    variants = max(len(body_sets), len(header_sets))
    requests = [
        build_request(url, method, body_sets[i % len(body_sets)], header_sets[i % len(header_sets)])[2] for i in range(variants)
    ]
    host, port, _ = build_request(url, method, None)
    pool = _Pool(host, port)

    async def one(i: int) -> tuple[float, int]:
        scheduled = start + i / rate_per_s
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))  # the schedule itself
        try:
            reader, writer = await pool.take()
            status, _retry_after = await asyncio.wait_for(_exchange(reader, writer, requests[i % len(requests)]), 60)
            pool.give_back(reader, writer)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            status = 0
        return time.perf_counter() - scheduled, status

    with collector_paused():
        start = time.perf_counter() + 0.1
        try:
            return await asyncio.gather(*(one(i) for i in range(count)))
        finally:
            pool.close()


async def closed_loop(
    url: str, method: str, bodies: list[bytes], concurrency: int, headers: dict[str, str] | None = None
) -> dict[int, int]:
    """Send every body, `concurrency` at a time, each connection sending its next as soon as it is
    answered; a 503 is sent again after its Retry-After. Counts of the final statuses."""
    host, port, _ = build_request(url, method, None)
    pending = [build_request(url, method, body, headers)[2] for body in reversed(bodies)]  # built before timing
    statuses: dict[int, int] = {}

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while pending:
                request = pending.pop()
                head = await _exchange(reader, writer, request)
                while head[0] == 503:  # busy: nothing stored, retry after the server's hint
                    await asyncio.sleep(float(head[1] or 1))
                    head = await _exchange(reader, writer, request)
                statuses[head[0]] = statuses.get(head[0], 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return statuses
