"""DLQ replay against the real embedded broker: bounded, selectable, dry-runnable, counted.

The failing consumer here is a real Kafka consumer that dead-letters everything it reads, as a
service does while the cause of the failure persists.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from rnpc_shared.contracts.events import dlq_topic, new_event
from rnpc_shared.kafka.producer import ensure_topics, topic_partitions
from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.kafka.outbox import PARKED_NOTICE_KIND
from rnpc_shared.kafka.replay import Selection, replay

pytestmark = pytest.mark.integration


async def topic_messages(connection: KafkaConnection, topic: str) -> list[tuple[str, bytes, dict[str, bytes]]]:
    """(key, value, headers) of every message now in `topic` (partition 0..n, up to the end)."""
    consumer = AIOKafkaConsumer(**connection.client_options(), enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = await topic_partitions(connection, topic)
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        # Explicit offsets: on Apache Kafka seek_to_beginning right after assign() can lose to the
        # fetcher's own "latest" reset and leave the position at the end.
        for tp, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, offset)
        out = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend((r.key.decode(), r.value, dict(r.headers)) for r in records)
        return out
    finally:
        await consumer.stop()


async def eventually_count(connection: KafkaConnection, topic: str, count: int, deadline_s: float = 30) -> list:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        messages = await topic_messages(connection, topic)
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.1)  # poll interval under a deadline
    raise AssertionError(f"{topic} never reached {count} messages")


class Topics:
    def __init__(self, connection: KafkaConnection) -> None:
        self.connection = connection
        self.topic = f"test.replay.{uuid.uuid4().hex[:8]}"
        self.dlq = dlq_topic(self.topic)
        self.producer = AIOKafkaProducer(**connection.client_options(), acks="all", enable_idempotence=False)

    async def dead_letter(self, key: str, value: bytes) -> None:
        headers = [("dlq.original_topic", self.topic.encode()), ("dlq.reason", b"cause persists"), ("ce_id", key.encode())]
        await self.producer.send_and_wait(self.dlq, key=key.encode(), value=value, headers=headers)


@pytest.fixture
async def topics(broker, request: pytest.FixtureRequest) -> AsyncIterator[Topics]:  # noqa: ANN001
    instance = Topics(broker.connection)
    # One partition unless asked: offsets 0..n-1 in send order, so a test can name messages by offset.
    partitions = getattr(request, "param", 1)
    await ensure_topics(broker.connection, [instance.topic, instance.dlq], partitions=partitions)
    await instance.producer.start()
    yield instance
    await instance.producer.stop()


async def always_dead_letter(topics: Topics, forwarded: list[str]) -> None:
    """A consumer whose failure cause persists: everything it reads goes straight back to the DLQ."""
    consumer = AIOKafkaConsumer(
        topics.topic, **topics.connection.client_options(), group_id=f"failing-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    await topics.dead_letter(record.key.decode(), record.value)
                    forwarded.append(record.key.decode())
    finally:
        await consumer.stop()


@pytest.mark.parametrize("topics", [3], indirect=True)  # as the pipeline's DLQs
async def test_replay_terminates_and_never_rereads_its_own_resends_when_the_cause_persists(topics: Topics) -> None:
    for i in range(5):
        await topics.dead_letter(f"case-{i}", f"event-{i}".encode())
    forwarded: list[str] = []
    failing = asyncio.create_task(always_dead_letter(topics, forwarded))
    try:
        group = f"replay-{uuid.uuid4().hex[:8]}"
        first = await replay(topics.connection, topics.dlq, group_id=group)
        assert (first.examined, first.replayed, first.skipped) == (5, 5, 0)
        assert first.by_topic == {topics.topic: 5}
        # Every re-send failed again and is back in the DLQ, after the first run's bound.
        dlq = await eventually_count(topics.connection, topics.dlq, 10)
        assert sorted(key for key, _, _ in dlq) == sorted([f"case-{i}" for i in range(5)] * 2)
        # The next run resumes at the group offset: exactly the five new failures, and stops again.
        second = await replay(topics.connection, topics.dlq, group_id=group)
        assert (second.examined, second.replayed) == (5, 5)
    finally:
        failing.cancel()
        await asyncio.gather(failing, return_exceptions=True)
    resent = await topic_messages(topics.connection, topics.topic)
    assert len(resent) == 10
    assert all("dlq.reason" not in headers and "dlq.replayed_from_offset" in headers for _, _, headers in resent)
    assert sorted(value for _, value, _ in resent) == sorted([f"event-{i}".encode() for i in range(5)] * 2)  # values untouched


async def test_dry_run_sends_and_commits_nothing(topics: Topics) -> None:
    for i in range(3):
        await topics.dead_letter(f"case-{i}", b"x")
    group = f"replay-{uuid.uuid4().hex[:8]}"
    dry = await replay(topics.connection, topics.dlq, group_id=group, dry_run=True)
    assert (dry.examined, dry.replayed) == (3, 3)
    assert dry.messages == [f"0:{i} case-{i} → {topics.topic}" for i in range(3)]
    assert await topic_messages(topics.connection, topics.topic) == []
    real = await replay(topics.connection, topics.dlq, group_id=group)  # nothing was committed
    assert real.replayed == 3


async def test_selection_by_key_or_offset_replays_only_those_and_moves_no_offset(topics: Topics) -> None:
    for i in range(4):
        await topics.dead_letter(f"case-{i}", f"event-{i}".encode())
    group = f"replay-{uuid.uuid4().hex[:8]}"
    chosen = await replay(
        topics.connection, topics.dlq, group_id=group, selection=Selection(messages=frozenset({(0, 3)}), keys=frozenset({"case-1"}))
    )
    assert (chosen.examined, chosen.replayed, chosen.skipped) == (4, 2, 2)
    assert sorted(value for _, value, _ in await topic_messages(topics.connection, topics.topic)) == [b"event-1", b"event-3"]
    rest = await replay(topics.connection, topics.dlq, group_id=group)  # the selection moved no offset
    assert rest.replayed == 4


async def test_each_original_event_is_replayed_once_and_parked_notices_are_skipped(topics: Topics) -> None:
    """A DLQ is per topic: an event rejected by three consumer groups is in it three times, and one
    re-send reaches every group. The relay's notice of a parked outbox row is not an event at all."""
    event = new_event(source="urn:test", type_=topics.topic, subject="case-1", data={"value": 1}, correlation_id=None)
    value = event.model_dump_json().encode()

    def copy_for(group: str, offset: int) -> list[tuple[str, bytes | None]]:
        return [
            ("content-type", b"application/cloudevents+json"), ("trace", None),  # as the producer set them
            ("dlq.original_topic", topics.topic.encode()), ("dlq.original_partition", b"0"),
            ("dlq.original_offset", str(offset).encode()), ("dlq.consumer_group", group.encode()), ("dlq.reason", None),
        ]

    for group in ("rnpc-scoring", "rnpc-evidence", "rnpc-recommendation"):  # one event, three groups
        await topics.producer.send_and_wait(topics.dlq, key=b"case-1", value=value, headers=copy_for(group, 0))
    for group in ("rnpc-scoring", "rnpc-evidence"):  # an unreadable message: known by its original position
        await topics.producer.send_and_wait(topics.dlq, key=b"case-2", value=b"{not json", headers=copy_for(group, 1))
    parked = [("dlq.kind", PARKED_NOTICE_KIND.encode()), ("dlq.error_type", b"OutboxParked"), ("dlq.original_topic", topics.topic.encode())]
    await topics.producer.send_and_wait(topics.dlq, key=b"case-3", value=b'{"id": "e-3", "data": {}}', headers=parked)

    group = f"replay-{uuid.uuid4().hex[:8]}"
    dry = await replay(topics.connection, topics.dlq, group_id=group, dry_run=True)
    assert (dry.examined, dry.replayed, dry.skipped) == (6, 2, 4)
    assert dry.skipped_by_reason == {"duplicate": 3, "outbox-parked notice": 1}
    assert dry.skipped_messages == [
        "0:1 case-1 (duplicate of 0:0)", "0:2 case-1 (duplicate of 0:0)", "0:4 case-2 (duplicate of 0:3)",
        "0:5 case-3 (outbox-parked notice: re-drive the case instead)",
    ]
    assert "skipped 4, duplicate: 3, outbox-parked notice: 1" in dry.summary()

    real = await replay(topics.connection, topics.dlq, group_id=group)
    assert (real.examined, real.replayed, real.skipped) == (6, 2, 4)
    resent = await topic_messages(topics.connection, topics.topic)
    assert sorted(value for _, value, _ in resent) == sorted([value, b"{not json"])
    assert all("dlq.reason" not in headers and "dlq.kind" not in headers for _, _, headers in resent)
    again = await replay(topics.connection, topics.dlq, group_id=group)  # every offset was committed, skipped ones too
    assert (again.examined, again.replayed) == (0, 0)


async def test_a_copy_without_its_value_is_skipped_with_where_the_original_is(topics: Topics) -> None:
    """A consumer omits the value of a dead letter too large for its producer (`dlq.value_omitted`):
    re-sending the empty value would be no event at all; the original is in its own topic."""
    omitted = [
        ("dlq.original_topic", topics.topic.encode()), ("dlq.original_partition", b"2"), ("dlq.original_offset", b"40"),
        ("dlq.reason", b"PermanentError: unprocessable"), ("dlq.value_omitted", b"too_large"),
        ("dlq.value_bytes", b"1100000"), ("dlq.value_sha256", b"ab" * 32),
    ]
    await topics.producer.send_and_wait(topics.dlq, key=b"case-big", value=b"", headers=omitted)
    await topics.dead_letter("case-1", b"event-1")

    group = f"replay-{uuid.uuid4().hex[:8]}"
    report = await replay(topics.connection, topics.dlq, group_id=group)
    assert (report.examined, report.replayed, report.skipped) == (2, 1, 1)
    assert report.skipped_by_reason == {"value omitted": 1}
    assert report.skipped_messages == [
        f"0:0 case-big (value omitted: too_large, 1100000 bytes, sha256 {'ab' * 32}; the original is in {topics.topic} "
        "at 2:40 until that topic's retention (re-read it there, not from the DLQ))"
    ]
    assert "skipped 1, value omitted: 1" in report.summary()
    assert [value for _, value, _ in await topic_messages(topics.connection, topics.topic)] == [b"event-1"]  # no empty event
    again = await replay(topics.connection, topics.dlq, group_id=group)  # the skipped one was committed too
    assert (again.examined, again.replayed) == (0, 0)
