"""Kafka topics, the CloudEvents 1.0 envelope (structured JSON mode) and the event payloads."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, create_model

from rnpc_shared.contracts.evidence import CaseEvidence, EvidenceBase
from rnpc_shared.contracts.recommendation import Recommendation
from rnpc_shared.contracts.record import SHA256_HEX, RecurrenceRecord, read_tolerant
from rnpc_shared.contracts.scores import Scores

TOPIC_RECURRENCE_RECORDED = "rnpc.recurrence.recorded.v1"
TOPIC_SCORES_COMPUTED = "rnpc.scores.computed.v1"
# v2: the case's evidence names its evidence base (announced on TOPIC_EVIDENCE_BASE) instead of
# embedding it; v1 carried the whole base (~80 KB) in every case's event.
TOPIC_EVIDENCE_MATCHED = "rnpc.evidence.matched.v2"
TOPIC_EVIDENCE_BASE = "rnpc.evidence.base.v1"  # key = evidence version; compacted
TOPIC_RECOMMENDATION_ISSUED = "rnpc.recommendation.issued.v1"
TOPIC_EHR_INBOUND = "rnpc.ehr.inbound.v1"  # integration engines: a native record or a FHIR Bundle
PIPELINE_TOPICS = (
    TOPIC_RECURRENCE_RECORDED,
    TOPIC_SCORES_COMPUTED,
    TOPIC_EVIDENCE_MATCHED,
    TOPIC_RECOMMENDATION_ISSUED,
)
# Every topic a service creates or is granted (the dead-letter topics follow from it).
ALL_TOPICS = (TOPIC_EHR_INBOUND, *PIPELINE_TOPICS, TOPIC_EVIDENCE_BASE)
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"


# An event id is every consumer's inbox key (rnpc_shared.kafka.tables.InboxEvent.event_id, a
# varchar of this length): a longer id, or one with control characters (PostgreSQL refuses NUL in
# text), fails the envelope's validation and is dead-lettered as invalid, never a database error.
EVENT_ID_MAX_LENGTH = 255
EVENT_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


class EventHeader(BaseModel):
    """The CloudEvents 1.0 context attributes of an event (its envelope without the data): what a
    consumer's handler gets beside the payload. Unknown attributes (extensions) are kept."""

    model_config = ConfigDict(extra="allow")

    specversion: str = Field(default="1.0", pattern=r"^1\.0$")
    id: str = Field(min_length=1, max_length=EVENT_ID_MAX_LENGTH, pattern=EVENT_ID_PATTERN)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    time: AwareDatetime
    datacontenttype: str = "application/json"
    correlationid: str = Field(min_length=1)


class CloudEvent(EventHeader):
    """CloudEvents 1.0 envelope (structured mode), its data as plain JSON values."""

    data: dict[str, Any]


P = TypeVar("P", bound=BaseModel)


@functools.cache
def _envelope(payload_model: type[BaseModel]) -> type[EventHeader]:
    return create_model(f"CloudEvent[{payload_model.__name__}]", __base__=EventHeader, data=(payload_model, ...))


def read_event(payload_model: type[P], value: bytes | str) -> tuple[EventHeader, P]:
    """An event as today's reader: one pass from the bytes into the payload model, so no plain
    copy of a ~75 KB document is built and then validated again. When a newer producer added
    fields that a strict nested model does not know, the tolerant reading ignores them instead
    (rolling deploys); any other error is the event's."""
    try:
        event = _envelope(payload_model).model_validate_json(value)
    except ValidationError as exc:
        if not any(error["type"] == "extra_forbidden" for error in exc.errors()):
            raise
        plain = CloudEvent.model_validate_json(value)
        return plain, read_tolerant(payload_model, plain.data)
    return event, event.data  # type: ignore[attr-defined]  # the envelope's typed data


def new_event(
    *, source: str, type_: str, subject: str, data: dict[str, Any], correlation_id: str | None
) -> CloudEvent:
    """Build an envelope; its id is fixed here, when the outbox row is written, never at send time."""
    event_id = str(uuid.uuid4())
    return CloudEvent(
        id=event_id,
        source=source,
        type=type_,
        subject=subject,
        time=datetime.now(UTC),
        correlationid=correlation_id or event_id,
        data=data,
    )


class Payload(BaseModel):
    """Event payloads ignore unknown fields: producers may add fields without breaking consumers."""

    model_config = ConfigDict(extra="ignore")


# Size budget of rnpc.recommendation.issued.v1 (self-contained for outside consumers: the
# recommendation with its basis and a record summary). Tested with the example record.
RECOMMENDATION_EVENT_BUDGET_BYTES = 64 * 1024


class RecordRef(Payload):
    """What every pipeline event is about: one record version, pinned by its content hash.

    Events are small: each carries its own result and this reference, never the earlier
    stages' results; a stage needing several joins them by this reference in its own database.
    """

    recurrence_id: str = Field(min_length=1, max_length=128)
    version: int = Field(ge=1)
    content_hash: str = Field(pattern=SHA256_HEX)


class RecurrenceRecorded(RecordRef):
    """Gateway → scoring, evidence, recommendation: the record itself (the only event with it)."""

    record: RecurrenceRecord


class ScoresComputed(RecordRef):
    """Scoring → evidence, recommendation, gateway: the scores and their hash."""

    scores: Scores
    result_hash: str = Field(pattern=SHA256_HEX)


class EvidenceMatched(RecordRef):
    """Evidence → recommendation, gateway: the case's evidence (its notes, on an evidence base
    named by version and hash), its hash and the scores it was based on."""

    evidence: CaseEvidence
    result_hash: str = Field(pattern=SHA256_HEX)
    scores_hash: str = Field(pattern=SHA256_HEX)


class EvidenceBaseAnnounced(Payload):
    """Evidence → recommendation, once per evidence version: the base every case's evidence of
    that version names, with the hash of its content (the reader refuses another content under
    a version it has, and a case naming another hash than the stored base's)."""

    base: EvidenceBase
    base_hash: str = Field(pattern=SHA256_HEX)


class StageResult(RecordRef):
    """The gateway's light reading of a stage event: the reference and hashes, not the result."""

    result_hash: str = Field(pattern=SHA256_HEX)
    scores_hash: str | None = Field(default=None, pattern=SHA256_HEX)


class RecordSummary(Payload):
    recurrence_id: str
    patient_ref: str
    version: int
    site: str
    t_category: str | None
    n_category: str
    m_category: str | None


class RecommendationIssued(RecordRef):
    """Recommendation → gateway and outside consumers: self-contained (the recommendation carries
    its basis per option), plus the hashes of the scores and evidence it was made from."""

    recommendation: Recommendation
    record_summary: RecordSummary
    scores_hash: str = Field(pattern=SHA256_HEX)
    evidence_hash: str = Field(pattern=SHA256_HEX)
