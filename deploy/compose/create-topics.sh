#!/usr/bin/env bash
# Creates the rNPC topics on the docker-compose Kafka (idempotent: --if-not-exists).
# Production topics are Strimzi KafkaTopic resources (deploy/k8s/kafka/topics.yaml) with the
# same names, 6 partitions, replication 3; keep the two lists in step (tests/deploy checks it).
set -euo pipefail

BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
PARTITIONS="${TOPIC_PARTITIONS:-6}"
REPLICATION="${TOPIC_REPLICATION_FACTOR:-1}"
RETENTION_MS=604800000       # 7 days
DLQ_RETENTION_MS=2592000000  # 30 days
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"

TOPICS=(
  rnpc.ehr.inbound.v1
  rnpc.recurrence.recorded.v1
  rnpc.scores.computed.v1
  rnpc.evidence.matched.v2
  rnpc.recommendation.issued.v1
  rnpc.evidence.base.v1
)
# Kept for good, the latest message per key (an evidence version's base).
COMPACTED=(rnpc.evidence.base.v1)

create() {
  local topic="$1"; shift
  "${KAFKA_BIN}/kafka-topics.sh" --bootstrap-server "${BOOTSTRAP}" \
    --create --if-not-exists --topic "${topic}" \
    --partitions "${PARTITIONS}" --replication-factor "${REPLICATION}" "$@"
}

for topic in "${TOPICS[@]}"; do
  if [[ " ${COMPACTED[*]} " == *" ${topic} "* ]]; then
    create "${topic}" --config cleanup.policy=compact
  else
    create "${topic}" --config "retention.ms=${RETENTION_MS}" --config cleanup.policy=delete
  fi
  create "${topic}.dlq" --config "retention.ms=${DLQ_RETENTION_MS}" --config cleanup.policy=delete
done

echo "Topics on ${BOOTSTRAP}:"
"${KAFKA_BIN}/kafka-topics.sh" --bootstrap-server "${BOOTSTRAP}" --list
