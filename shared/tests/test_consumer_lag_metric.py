"""The lag gauge of a partition leaves with the partition (pure: the rebalance listener alone)."""

from __future__ import annotations

from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from rnpc_shared import metrics
from rnpc_shared.kafka.consumer import _RebalanceCounter


async def test_a_revoked_partition_stops_exporting_its_lag() -> None:
    listener = _RebalanceCounter("lag-probe")
    metrics.CONSUMER_LAG.labels("lag-probe", "t", "0").set(80)
    metrics.CONSUMER_LAG.labels("lag-probe", "t", "1").set(5)
    await listener.on_partitions_revoked({TopicPartition("t", 0), TopicPartition("t", 2)})  # 2 never exported
    assert REGISTRY.get_sample_value("rnpc_consumer_lag", {"service": "lag-probe", "topic": "t", "partition": "0"}) is None
    assert REGISTRY.get_sample_value("rnpc_consumer_lag", {"service": "lag-probe", "topic": "t", "partition": "1"}) == 5
