"""SASL/SCRAM and ACLs on Apache Kafka: each service principal writes only the topics it owns and
reads only those it consumes; a client without valid credentials gets nothing at all.

The clients are built the way the services build theirs (ServiceSettings → KafkaConnection)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka_broker import KafkaBroker, run_async  # tests/support
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from rnpc_shared.contracts.events import TOPIC_RECOMMENDATION_ISSUED, TOPIC_SCORES_COMPUTED, dlq_topic
from rnpc_devstack.stack import pipeline_topics
from rnpc_shared.kafka.access import DLQ_REPLAY, SERVICE_ACCESS
from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.kafka.producer import EventProducer, ensure_topics
from rnpc_shared.kafka.replay import Selection, replay
from rnpc_shared.settings import ServiceSettings

pytestmark = pytest.mark.integration

SEND_DEADLINE_S = 20


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A private broker: probes here join service groups and write junk, away from the stack's."""
    work_dir: Path = tmp_path_factory.mktemp("acl-broker")
    instance = KafkaBroker(work_dir).start(work_dir / "kafka.log")
    run_async(lambda: ensure_topics(instance.connection, pipeline_topics()))
    yield instance
    instance.stop()


async def _send(connection: KafkaConnection, topic: str) -> None:
    producer = EventProducer(ServiceSettings(**connection.settings_fields(), kafka_send_timeout_s=SEND_DEADLINE_S))
    await asyncio.wait_for(producer.start(), SEND_DEADLINE_S)
    try:
        await producer.send(topic, key="acl-probe", value=b'{"probe": true}', headers=[])
    finally:
        await producer.stop()


@pytest.mark.parametrize("principal", ["gateway", "scoring", "evidence"])
async def test_another_services_credentials_cannot_write_recommendations(broker, principal: str) -> None:  # noqa: ANN001
    assert TOPIC_RECOMMENDATION_ISSUED not in SERVICE_ACCESS[principal].writes
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(broker.connection_for(principal), TOPIC_RECOMMENDATION_ISSUED)


async def test_the_recommendation_principal_can_write_recommendations(broker) -> None:  # noqa: ANN001
    await _send(broker.connection_for("recommendation"), TOPIC_RECOMMENDATION_ISSUED)  # acknowledged


async def test_no_credentials_or_a_wrong_password_get_no_connection(broker) -> None:  # noqa: ANN001
    anonymous = KafkaConnection(broker.bootstrap_servers)  # PLAINTEXT against the SASL listener
    with pytest.raises(KafkaConnectionError):
        await _send(anonymous, TOPIC_RECOMMENDATION_ISSUED)
    with pytest.raises(KafkaConnectionError):
        await _send(broker.connection_for("recommendation", password="not-the-password"), TOPIC_RECOMMENDATION_ISSUED)


async def _read_one_batch(connection: KafkaConnection, topic: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        topic, **connection.client_options(), group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.getmany(timeout_ms=2000), SEND_DEADLINE_S)
    finally:
        await consumer.stop()


async def test_a_service_reads_only_what_it_consumes_with_its_own_group(broker) -> None:  # noqa: ANN001
    evidence = broker.connection_for("evidence")
    await _read_one_batch(evidence, TOPIC_SCORES_COMPUTED, SERVICE_ACCESS["evidence"].group)  # allowed
    with pytest.raises(TopicAuthorizationFailedError):
        await _read_one_batch(evidence, TOPIC_RECOMMENDATION_ISSUED, SERVICE_ACCESS["evidence"].group)
    with pytest.raises(GroupAuthorizationFailedError):
        await _read_one_batch(evidence, TOPIC_SCORES_COMPUTED, SERVICE_ACCESS["scoring"].group)


async def test_a_service_principal_cannot_create_topics(broker) -> None:  # noqa: ANN001
    # ensure_topics reports the broker's refusal instead of swallowing it.
    with pytest.raises(TopicAuthorizationFailedError):
        await ensure_topics(broker.connection_for("scoring"), [f"rnpc.not-declared.{uuid.uuid4().hex[:8]}"])


async def test_the_replay_principal_replays_dead_letters_and_reads_nothing_else(broker) -> None:  # noqa: ANN001
    dlq = dlq_topic(TOPIC_SCORES_COMPUTED)
    assert set(DLQ_REPLAY.reads) == {dlq_topic(t) for t in DLQ_REPLAY.writes}
    key = f"replay-probe-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(**broker.connection.client_options(), acks="all", enable_idempotence=False)
    await producer.start()
    try:  # a dead letter, as a consumer writes it
        await producer.send_and_wait(dlq, key=key.encode(), value=b'{"probe": true}', headers=[("dlq.original_topic", TOPIC_SCORES_COMPUTED.encode())])
    finally:
        await producer.stop()
    report = await replay(broker.connection_for(DLQ_REPLAY.principal), dlq, selection=Selection(keys=frozenset({key})))
    assert (report.replayed, report.by_topic) == (1, {TOPIC_SCORES_COMPUTED: 1})
    with pytest.raises(TopicAuthorizationFailedError):  # a pipeline topic itself: not the tool's to read
        await _read_one_batch(broker.connection_for(DLQ_REPLAY.principal), TOPIC_SCORES_COMPUTED, DLQ_REPLAY.group)
