"""Replay a dead-letter topic into its original topic, once the cause is fixed.

    python -m rnpc_shared.kafka.replay --bootstrap 127.0.0.1:9092 --dlq rnpc.scores.computed.v1.dlq [--dry-run]
        [--message 0:17 --message 0:18] [--key case-42]

Bounded: the DLQ's end offsets are taken once at start and the replay stops there, so a message
that fails again (its cause persists) lands in the DLQ beyond that bound and is never re-read by
the run that re-sent it. Each run therefore reads every message at most once and terminates.

Position: a full replay (no selection) starts at this tool's group offset (or the beginning) and
commits each DLQ offset after its send is acknowledged, so the next run resumes there. A
selection (`--message partition:offset`, `--key`) replays only the chosen messages and moves no
offset (the skipped ones stay for a later replay). `--dry-run` lists what would be re-sent and
sends and commits nothing. Each message goes back with its original key and value, dlq.* headers
dropped and a `dlq.replayed_from_offset` header added; consumers dedupe by event id.

Skipped, never re-sent (counted per reason, each listed): the relay's notices of outbox rows it
parked (`dlq.kind: outbox-parked`; not events: the case is re-driven instead), copies whose
value was omitted (`dlq.value_omitted`: the event was larger than a dead letter may be; its line
names where the original is, in its topic until that topic's retention), and duplicates. A
DLQ is per topic, not per consumer group: an event that k groups rejected is in it k times, and
one send reaches every group. So each original event is re-sent at most once per run: the first
copy goes, the others are duplicates. An event is known by its original topic and its CloudEvent
id when the value is readable, else its original topic, partition and offset (the `dlq.original_*`
headers), else its key and value.

Against a broker with SASL, add e.g. `--security-protocol SASL_SSL --sasl-mechanism SCRAM-SHA-512
--sasl-username <principal>` and put the password in the environment as RNPC_KAFKA_SASL_PASSWORD
(never on the command line), and `--ssl-cafile <ca.crt>` with SSL/SASL_SSL. Use the tool's own
principal (rnpc_shared.kafka.access.DLQ_REPLAY): READ on the dead-letter topics and its group,
WRITE on the topics they came from, nothing else. Its SCRAM user name is the KafkaUser's name,
`--sasl-username rnpc-dlq-replay` in deploy/k8s (Secret rnpc-dlq-replay, key `password`); the test
broker of tests/support/kafka_broker.py names it after the bare principal, `dlq-replay`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import SecretStr

from rnpc_shared.kafka.access import DLQ_REPLAY
from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.kafka.consumer import decode_dlq_headers, fields_digest, original_position
from rnpc_shared.kafka.outbox import PARKED_NOTICE_KIND
from rnpc_shared.kafka.producer import topic_partitions

DLQ_HEADER_PREFIX = "dlq."
PASSWORD_ENV = "RNPC_KAFKA_SASL_PASSWORD"


@dataclass(frozen=True)
class Selection:
    """Which DLQ messages to replay; empty means all of them."""

    messages: frozenset[tuple[int, int]] = frozenset()  # (partition, offset)
    keys: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        return not self.messages and not self.keys

    def wants(self, record: ConsumerRecord) -> bool:
        if self.everything:
            return True
        key = record.key.decode(errors="replace") if record.key is not None else None
        return (record.partition, record.offset) in self.messages or key in self.keys


class Skip:
    """Why a DLQ message was not re-sent."""

    not_selected = "not selected"
    parked_notice = "outbox-parked notice"
    value_omitted = "value omitted"
    duplicate = "duplicate"


@dataclass
class ReplayReport:
    dlq: str
    dry_run: bool
    examined: int = 0  # DLQ messages read (up to the end offsets taken at start)
    replayed: int = 0  # re-sent (or, in a dry run, that would have been)
    skipped: int = 0  # not re-sent: examined - replayed
    skipped_by_reason: dict[str, int] = field(default_factory=dict)  # Skip.* → count
    by_topic: dict[str, int] = field(default_factory=dict)  # replayed per original topic
    messages: list[str] = field(default_factory=list)  # "partition:offset key → topic" per replayed message
    # "partition:offset key (reason)" per message skipped as a parked notice or a duplicate
    # (not the unselected ones: a selection is a handful out of many).
    skipped_messages: list[str] = field(default_factory=list)

    def skip(self, reason: str, line: str | None = None) -> None:
        self.skipped += 1
        self.skipped_by_reason[reason] = self.skipped_by_reason.get(reason, 0) + 1
        if line is not None:
            self.skipped_messages.append(line)

    def summary(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        topics = ", ".join(f"{topic}: {n}" for topic, n in sorted(self.by_topic.items())) or "-"
        reasons = "".join(f", {reason}: {n}" for reason, n in sorted(self.skipped_by_reason.items()))
        return f"{self.dlq}: examined {self.examined}, {verb} {self.replayed}, skipped {self.skipped}{reasons} (by topic: {topics})"


def original_topic(headers: dict[str, str], dlq: str) -> str:
    return headers.get("dlq.original_topic") or dlq.removesuffix(".dlq")


def is_parked_notice(headers: dict[str, str]) -> bool:
    """The relay's notice of an outbox row it parked (see OutboxRelay._announce_parked)."""
    return headers.get("dlq.kind") == PARKED_NOTICE_KIND


def value_omitted(headers: dict[str, str], topic: str) -> str | None:
    """Why and where, when the DLQ copy carries no value (the consumer's `_dead_letter_copy`):
    re-sending its empty value would be no event at all; the original is in its own topic."""
    why = headers.get("dlq.value_omitted")
    if why is None:
        return None
    size = headers.get("dlq.value_bytes", "?")
    where = original_position(headers) or "an unrecorded position"
    return (
        f"{why}, {size} bytes, sha256 {headers.get('dlq.value_sha256', '?')}; the original is in {topic} at "
        f"{where} until that topic's retention (re-read it there, not from the DLQ)"
    )


def original_event(record: ConsumerRecord, headers: dict[str, str], topic: str) -> tuple[str, ...]:
    """What the DLQ message is a copy of (see the module doc): the same for each group's copy."""
    try:
        event_id = json.loads(record.value).get("id")
    except (ValueError, TypeError, AttributeError):
        event_id = None
    if isinstance(event_id, str) and event_id:
        return (topic, "id", event_id)
    if "dlq.original_partition" in headers and "dlq.original_offset" in headers:
        return (topic, "position", headers["dlq.original_partition"], headers["dlq.original_offset"])
    return (topic, "content", fields_digest([record.key, record.value]))


def replay_headers(record: ConsumerRecord) -> list[tuple[str, bytes]]:
    headers = [(k, v) for k, v in record.headers or [] if not k.startswith(DLQ_HEADER_PREFIX)]
    headers.append(("dlq.replayed_from_offset", f"{record.partition}:{record.offset}".encode()))
    return headers


async def _start_offsets(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], resume: bool) -> dict[TopicPartition, int]:
    beginnings = await consumer.beginning_offsets(partitions)
    starts = dict(beginnings)
    if resume:
        for tp in partitions:
            committed = await consumer.committed(tp)
            if committed is not None:
                starts[tp] = max(committed, beginnings[tp])
    return starts


async def replay(
    connection: KafkaConnection,
    dlq: str,
    *,
    group_id: str = DLQ_REPLAY.group,
    dry_run: bool = False,
    selection: Selection | None = None,
    fetch_timeout_ms: int = 500,
) -> ReplayReport:
    """Replay the DLQ up to its end offsets at start; returns what was done (see the module doc)."""
    selection = selection or Selection()
    commit = selection.everything and not dry_run
    report = ReplayReport(dlq=dlq, dry_run=dry_run)
    options = connection.client_options()
    consumer = AIOKafkaConsumer(**options, group_id=group_id, enable_auto_commit=False, fetch_max_wait_ms=50)
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=False)
    await consumer.start()
    if not dry_run:
        await producer.start()
    try:
        partitions = await topic_partitions(connection, dlq)
        if not partitions:
            return report
        sent: dict[tuple[str, ...], str] = {}  # original event → the DLQ message re-sent for it
        consumer.assign(partitions)  # no group membership: nothing to rebalance, nothing to wait for
        ends = await consumer.end_offsets(partitions)  # the bound, fixed before the first re-send
        starts = await _start_offsets(consumer, partitions, resume=selection.everything)
        remaining = [tp for tp in partitions if starts[tp] < ends[tp]]
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=fetch_timeout_ms)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break  # beyond the bound: written after this run started (maybe by it)
                    await _replay_one(record, dlq, producer, report, selection, dry_run, sent)
                    if commit:
                        await consumer.commit({tp: record.offset + 1})
            remaining = [tp for tp in remaining if await consumer.position(tp) < ends[tp]]
    finally:
        if not dry_run:
            await producer.stop()
        await consumer.stop()
    return report


async def _replay_one(
    record: ConsumerRecord,
    dlq: str,
    producer: AIOKafkaProducer,
    report: ReplayReport,
    selection: Selection,
    dry_run: bool,
    sent: dict[tuple[str, ...], str],
) -> None:
    report.examined += 1
    if not selection.wants(record):
        report.skip(Skip.not_selected)
        return
    key = record.key.decode(errors="replace") if record.key is not None else "-"
    here = f"{record.partition}:{record.offset}"
    headers = decode_dlq_headers(record.headers)  # read once: every check below looks at them
    if is_parked_notice(headers):
        report.skip(Skip.parked_notice, f"{here} {key} ({Skip.parked_notice}: re-drive the case instead)")
        return
    topic = original_topic(headers, dlq)
    if (omitted := value_omitted(headers, topic)) is not None:
        report.skip(Skip.value_omitted, f"{here} {key} ({Skip.value_omitted}: {omitted})")
        return
    event = original_event(record, headers, topic)
    if event in sent:
        report.skip(Skip.duplicate, f"{here} {key} ({Skip.duplicate} of {sent[event]})")
        return
    if not dry_run:
        await producer.send_and_wait(topic, value=record.value, key=record.key, headers=replay_headers(record))
    sent[event] = here
    report.replayed += 1
    report.by_topic[topic] = report.by_topic.get(topic, 0) + 1
    report.messages.append(f"{here} {key} → {topic}")


def parse_messages(values: Iterable[str]) -> frozenset[tuple[int, int]]:
    out = set()
    for value in values:
        partition, _, offset = value.partition(":")
        out.add((int(partition), int(offset)))
    return frozenset(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--dlq", required=True, help="the dead-letter topic, e.g. rnpc.scores.computed.v1.dlq")
    parser.add_argument("--group-id", default=DLQ_REPLAY.group)
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed; send and commit nothing")
    parser.add_argument("--message", action="append", default=[], metavar="PARTITION:OFFSET", help="replay only this message (repeatable)")
    parser.add_argument("--key", action="append", default=[], help="replay only messages with this key, e.g. a recurrence_id (repeatable)")
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
    selection = Selection(messages=parse_messages(args.message), keys=frozenset(args.key))
    report = asyncio.run(replay(connection, args.dlq, group_id=args.group_id, dry_run=args.dry_run, selection=selection))
    for line in report.messages:
        print(("would replay " if report.dry_run else "replayed ") + line)
    for line in report.skipped_messages:
        print("skipped " + line)
    print(report.summary())


if __name__ == "__main__":
    main()
