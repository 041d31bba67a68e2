"""Producer with send timeouts (a send can hang while the broker is down: aiokafka #1101)."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import NoError, TopicAlreadyExistsError, for_code

from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.settings import ServiceSettings

Headers = list[tuple[str, bytes]]


class Message(NamedTuple):
    topic: str
    key: str
    value: bytes
    headers: Headers


class EventProducer:
    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
        # No idempotent producer / transactions: Tansu lacks InitProducerId and the
        # outbox + inbox design does not need them (a resend after a lost ack is a duplicate the
        # consumers' inbox absorbs). acks=all for durability on Apache Kafka.
        self._producer = AIOKafkaProducer(
            **KafkaConnection.from_settings(settings).client_options(),
            client_id=f"rnpc-{settings.service_name}",
            acks="all",
            enable_idempotence=False,
            request_timeout_ms=settings.kafka_request_timeout_ms,
            linger_ms=0,
            max_request_size=settings.kafka_max_message_bytes,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, *, key: str, value: bytes, headers: Headers) -> None:
        """Send and await the broker's ack, bounded by the send timeout."""
        await asyncio.wait_for(
            self._producer.send_and_wait(topic, value=value, key=key.encode(), headers=headers),
            timeout=self._settings.kafka_send_timeout_s,
        )

    async def send_many(self, messages: list[Message]) -> list[BaseException | None]:
        """Enqueue every message at once, then await the acknowledgements together (pipelined).

        Returns one entry per message: None when acknowledged, else the error. Messages of one
        call are enqueued concurrently (one waiting for its topic's metadata does not hold up the
        others), so a caller passes at most one message per key per call to keep key order.
        """
        timeout_s = self._settings.kafka_send_timeout_s

        async def enqueue(message: Message) -> asyncio.Future[object]:
            return await asyncio.wait_for(
                self._producer.send(message.topic, value=message.value, key=message.key.encode(), headers=message.headers),
                timeout=timeout_s,
            )

        enqueued = await asyncio.gather(*(enqueue(m) for m in messages), return_exceptions=True)
        results: list[BaseException | None] = [None] * len(messages)
        futures: dict[asyncio.Future[object], int] = {}
        for index, outcome in enumerate(enqueued):
            if isinstance(outcome, BaseException):  # refused before sending (too large, no metadata, closed)
                results[index] = outcome
            else:
                futures[outcome] = index
        if futures:
            done, not_done = await asyncio.wait(futures, timeout=timeout_s)
            for future in done:
                results[futures[future]] = future.exception()
            for future in not_done:
                results[futures[future]] = TimeoutError("no acknowledgement within the send timeout")
        return results

    async def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        try:
            return bool(await asyncio.wait_for(self._producer.client.force_metadata_update(), timeout_s))
        except (TimeoutError, OSError):
            return False


async def ensure_topics(
    connection: KafkaConnection, topics: list[str], *, partitions: int = 3, replication_factor: int = 1
) -> None:
    """Create topics if missing (local runs and tests; production declares KafkaTopic resources).

    Needs a principal allowed to describe and create topics (under ACLs: the admin, not a service);
    the broker's own topic auto-creation is never relied on (Apache Kafka may have it off)."""
    admin = AIOKafkaAdminClient(**connection.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(t, num_partitions=partitions, replication_factor=replication_factor) for t in missing]
            )
            # aiokafka returns per-topic errors instead of raising them (e.g. denied by an ACL).
            for result in response.to_object()["topic_errors"]:
                error = for_code(result["error_code"])
                if error is not NoError and error is not TopicAlreadyExistsError:  # exists: created concurrently
                    raise error(f"creating topic {result['topic']}: {result.get('error_message')}")
    finally:
        await admin.close()


async def topic_partitions(connection: KafkaConnection, topic: str) -> list[TopicPartition]:
    """The topic's partitions, asked of the cluster (empty if it does not exist or is not visible).

    Not the client's cached metadata: on Apache Kafka a fresh consumer knows no topics until it is
    assigned some, so `partitions_for_topic` gives None there (the embedded broker hands out all)."""
    admin = AIOKafkaAdminClient(**connection.client_options())
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(
        TopicPartition(topic, partition["partition"])
        for entry in described
        if entry["topic"] == topic and for_code(entry["error_code"]) is NoError
        for partition in entry["partitions"]
    )
