"""The raw 4-hop relay: produce → consume → produce ... over the broker, no database, no parsing.

The yardstick for the pipeline: the same hops (recorded → scores → evidence → recommendation →
gateway), the same message sizes, the same broker, consumer groups committing per batch.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from rnpc_shared.contracts.events import (
    TOPIC_EVIDENCE_MATCHED,
    TOPIC_RECOMMENDATION_ISSUED,
    TOPIC_RECURRENCE_RECORDED,
    TOPIC_SCORES_COMPUTED,
)
from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.kafka.producer import ensure_topics, topic_partitions

PIPELINE_HOPS = (TOPIC_RECURRENCE_RECORDED, TOPIC_SCORES_COMPUTED, TOPIC_EVIDENCE_MATCHED, TOPIC_RECOMMENDATION_ISSUED)


async def event_sizes(bootstrap: str) -> dict[str, int]:
    """Bytes of one real event per pipeline topic (the first one the pipeline wrote)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    sizes: dict[str, int] = {}
    try:
        connection = KafkaConnection(bootstrap_servers=bootstrap)
        by_topic = {t: await topic_partitions(connection, t) for t in PIPELINE_HOPS}
        for topic, partitions in by_topic.items():
            consumer.assign(partitions)
            for tp, offset in (await consumer.beginning_offsets(partitions)).items():
                consumer.seek(tp, offset)  # explicit: seek_to_beginning can lose to a "latest" reset on Apache Kafka
            deadline = time.monotonic() + 10
            while topic not in sizes and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    sizes[topic] = len(records[0].value or b"")
                    break
    finally:
        await consumer.stop()
    return sizes


async def _stage(bootstrap: str, source: str, target: str | None, payload: bytes, group: str, received: list[int]) -> None:
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            if target is not None:
                sends = [
                    await producer.send(target, key=record.key, value=payload)
                    for records in batches.values()
                    for record in records
                ]
                await asyncio.gather(*sends)  # acknowledged together, then the offsets
            if batches:
                await consumer.commit()
                received.append(sum(len(records) for records in batches.values()))
    finally:
        await producer.stop()
        await consumer.stop()


async def relay(bootstrap: str, sizes: list[int], count: int) -> float:
    """Send `count` records through 4 hops with the given per-hop sizes; records/s end to end."""
    run = uuid.uuid4().hex[:8]
    topics = [f"bench.relay.{run}.{hop}" for hop in range(len(sizes))]
    await ensure_topics(KafkaConnection(bootstrap_servers=bootstrap), topics)  # the embedded broker: PLAINTEXT
    received: list[int] = []
    stages = [
        asyncio.create_task(
            _stage(bootstrap, topics[hop], topics[hop + 1] if hop + 1 < len(topics) else None,
                   os.urandom(sizes[hop + 1]) if hop + 1 < len(sizes) else b"", f"relay-{run}-{hop}", received if hop + 1 == len(topics) else [])
        )
        for hop in range(len(topics))
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=0)
    await producer.start()
    first = os.urandom(sizes[0])
    try:
        async def through(n: int, deadline_s: float) -> None:
            target = sum(received) + n
            await asyncio.gather(*[await producer.send(topics[0], key=f"r-{i}".encode(), value=first) for i in range(n)])
            deadline = time.monotonic() + deadline_s
            while sum(received) < target:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"relay: {sum(received)}/{target} after {deadline_s} s")
                await asyncio.sleep(0.01)  # polling the sink's count under a deadline

        await through(1, 120)  # warm-up: every group joined and assigned
        started = time.perf_counter()
        await through(count, 600)
        return count / (time.perf_counter() - started)
    finally:
        await producer.stop()
        for stage in stages:
            stage.cancel()
        await asyncio.gather(*stages, return_exceptions=True)
