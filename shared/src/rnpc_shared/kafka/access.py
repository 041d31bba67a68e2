"""Which topics each service may write and read: the source of its broker ACLs.

Each service is its own principal (its name). It writes the topic it owns, that topic's dead-letter
topic (the relay's notice of a parked outbox row) and the dead-letter topics of the topics it
consumes; it reads the topics it consumes, with its consumer group. Stages join their inputs from
several topics (small events), so evidence and recommendation read the earlier topics too. The
gateway also reads every dead-letter topic, to show a case's failed stage, and the EHR inbound topic.

Operator tools have principals of their own: the DLQ replay (`python -m rnpc_shared.kafka.replay`)
reads the dead-letter topics with its group and writes back to the topics they came from, and
nothing else; its credential is an operator's secret, and the consumers' provenance checks still
apply to what it re-sends.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnpc_shared.contracts.events import (
    ALL_TOPICS,
    PIPELINE_TOPICS,
    TOPIC_EHR_INBOUND,
    TOPIC_EVIDENCE_BASE,
    TOPIC_EVIDENCE_MATCHED,
    TOPIC_RECOMMENDATION_ISSUED,
    TOPIC_RECURRENCE_RECORDED,
    TOPIC_SCORES_COMPUTED,
    dlq_topic,
)


@dataclass(frozen=True)
class ServiceAccess:
    principal: str
    owns: tuple[str, ...]  # the topics this service produces
    consumes: tuple[str, ...]  # topics it handles (a failure goes to the topic's .dlq)
    observes: tuple[str, ...] = ()  # topics it reads without dead-lettering (the .dlq topics)

    @property
    def group(self) -> str:
        return f"rnpc-{self.principal}"  # ServiceSettings.group_id's default

    @property
    def writes(self) -> tuple[str, ...]:
        return (*self.owns, *dict.fromkeys(dlq_topic(topic) for topic in (*self.owns, *self.consumes)))

    @property
    def reads(self) -> tuple[str, ...]:
        return (*self.consumes, *self.observes)


SERVICE_ACCESS: dict[str, ServiceAccess] = {
    access.principal: access
    for access in (
        ServiceAccess(
            "gateway",
            owns=(TOPIC_RECURRENCE_RECORDED,),
            consumes=(TOPIC_SCORES_COMPUTED, TOPIC_EVIDENCE_MATCHED, TOPIC_RECOMMENDATION_ISSUED, TOPIC_EHR_INBOUND),
            observes=tuple(dlq_topic(topic) for topic in PIPELINE_TOPICS),
        ),
        ServiceAccess("scoring", owns=(TOPIC_SCORES_COMPUTED,), consumes=(TOPIC_RECURRENCE_RECORDED,)),
        ServiceAccess(
            "evidence",
            owns=(TOPIC_EVIDENCE_MATCHED, TOPIC_EVIDENCE_BASE),
            consumes=(TOPIC_RECURRENCE_RECORDED, TOPIC_SCORES_COMPUTED),
        ),
        ServiceAccess(
            "recommendation",
            owns=(TOPIC_RECOMMENDATION_ISSUED,),
            consumes=(TOPIC_RECURRENCE_RECORDED, TOPIC_SCORES_COMPUTED, TOPIC_EVIDENCE_MATCHED, TOPIC_EVIDENCE_BASE),
        ),
    )
}


@dataclass(frozen=True)
class ToolAccess:
    """An operator tool's principal: the topics it reads (with its own group) and writes."""

    principal: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]

    @property
    def group(self) -> str:
        return f"rnpc-{self.principal}"  # the tool's default --group-id


REPLAYABLE_TOPICS = ALL_TOPICS
DLQ_REPLAY = ToolAccess(
    "dlq-replay", reads=tuple(dlq_topic(topic) for topic in REPLAYABLE_TOPICS), writes=REPLAYABLE_TOPICS
)
PRINCIPALS: tuple[ServiceAccess | ToolAccess, ...] = (*SERVICE_ACCESS.values(), DLQ_REPLAY)
