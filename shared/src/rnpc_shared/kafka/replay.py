"""Replay a dead-letter topic into its original topic, once the cause is fixed.

    python -m rnpc_shared.kafka.replay --bootstrap 127.0.0.1:9092 --dlq rnpc.scores.computed.v1.dlq

Against a broker with SASL, add e.g. `--security-protocol SASL_SSL --sasl-mechanism SCRAM-SHA-512
--sasl-username <principal>` and put the password in the environment as RNPC_KAFKA_SASL_PASSWORD
(never on the command line). The principal needs READ on the DLQ and its group, WRITE on the
original topic.

Reads the DLQ from this tool's own consumer group (so a replay resumes where the last one
stopped), re-sends each message with its original key and value (dlq.* headers dropped, a
`dlq.replayed_from_offset` header added), and commits each DLQ offset only after the send is
acknowledged. Consumers dedupe by event id, so replaying twice is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.kafka.consumer import decode_dlq_headers

PASSWORD_ENV = "RNPC_KAFKA_SASL_PASSWORD"


async def replay(
    connection: KafkaConnection, dlq: str, *, group_id: str = "rnpc-dlq-replay", idle_timeout_ms: int = 2000
) -> int:
    """Replay every DLQ message not yet replayed by `group_id`; returns how many were re-sent."""
    options = connection.client_options()
    consumer = AIOKafkaConsumer(
        dlq, **options, group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=False)
    await consumer.start()
    await producer.start()
    replayed = 0
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=idle_timeout_ms)
            if not batches:
                if consumer.assignment():
                    break  # assigned and idle: the DLQ is drained
                continue  # still joining the group
            for tp, records in batches.items():
                for record in records:
                    original_topic = decode_dlq_headers(record.headers).get("dlq.original_topic") or dlq.removesuffix(".dlq")
                    headers = [(k, v) for k, v in record.headers if not k.startswith("dlq.")]
                    headers.append(("dlq.replayed_from_offset", str(record.offset).encode()))
                    await producer.send_and_wait(original_topic, value=record.value, key=record.key, headers=headers)
                    await consumer.commit({tp: record.offset + 1})
                    replayed += 1
    finally:
        await producer.stop()
        await consumer.stop()
    return replayed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--dlq", required=True, help="the dead-letter topic, e.g. rnpc.scores.computed.v1.dlq")
    parser.add_argument("--group-id", default="rnpc-dlq-replay")
    parser.add_argument("--security-protocol", default="PLAINTEXT", choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
    parser.add_argument("--sasl-mechanism", choices=["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
    parser.add_argument("--sasl-username")
    parser.add_argument("--ssl-cafile")
    args = parser.parse_args()
    password = os.environ.get(PASSWORD_ENV)
    connection = KafkaConnection(
        bootstrap_servers=args.bootstrap,
        security_protocol=args.security_protocol,
        sasl_mechanism=args.sasl_mechanism,
        sasl_username=args.sasl_username,
        sasl_password=SecretStr(password) if password else None,
        ssl_cafile=args.ssl_cafile,
    )
    if connection.uses_sasl and not (args.sasl_mechanism and args.sasl_username and password):
        parser.error(f"{args.security_protocol} needs --sasl-mechanism, --sasl-username and {PASSWORD_ENV}")
    count = asyncio.run(replay(connection, args.dlq, group_id=args.group_id))
    print(f"replayed {count} message(s) from {args.dlq}")


if __name__ == "__main__":
    main()
