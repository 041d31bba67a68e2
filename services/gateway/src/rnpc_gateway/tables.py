"""The gateway's own tables: record versions, per-stage state, and the recommendation read model."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from rnpc_shared.db import UtcDateTime, utc_now
from rnpc_shared.kafka.tables import InboxEvent, OutboxEvent  # noqa: F401 - part of this service's schema


class RecordVersion(SQLModel, table=True):
    __tablename__ = "record_versions"
    __table_args__ = (
        UniqueConstraint("recurrence_id", "version"),
        # A patient's cases and their latest versions (CDS Hooks, GuidanceResponse?subject=), from
        # the index alone: without it every such read scanned every record version.
        Index("ix_record_versions_patient", "patient_ref", "recurrence_id", "version"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    recurrence_id: str = Field(max_length=128, index=True)
    version: int
    patient_ref: str = Field(max_length=128)
    content_hash: str = Field(max_length=64)
    record: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    correlation_id: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)
    redrive_count: int = 0
    last_redrive_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class CaseHead(SQLModel, table=True):
    """The latest accepted version of a case; moved only forward, by a compare-and-set."""

    __tablename__ = "case_heads"

    recurrence_id: str = Field(primary_key=True, max_length=128)
    latest_version: int = Field(sa_type=BigInteger)


class StageState(SQLModel, table=True):
    """Processing state of one record version at one stage (scoring, evidence, recommendation)."""

    __tablename__ = "stage_states"

    recurrence_id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    stage: str = Field(primary_key=True, max_length=32)
    state: str = Field(max_length=32)
    # Hash of the stage's result (scores, evidence): what later stages must have been based on.
    result_hash: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)


class RecommendationView(SQLModel, table=True):
    """Read model fed by rnpc.recommendation.issued.v1: the current recommendation per record version.

    `body` is the recommendation's JSON text, served as stored (no parse, no re-validation).
    A re-evaluation under new rules or evidence replaces it; the old one moves to
    SupersededRecommendation.
    """

    __tablename__ = "recommendation_views"
    __table_args__ = (
        UniqueConstraint("recurrence_id", "version"),
        # Covers "which cases predate today's rules or evidence" (re-evaluation and its progress):
        # answered from the index, never from rows whose ~64 KB body spans overflow pages.
        Index("ix_recommendation_views_versions", "recurrence_id", "version", "rules_version", "evidence_version"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    recurrence_id: str = Field(max_length=128, index=True)
    version: int
    status: str = Field(max_length=32)
    rules_version: str = Field(max_length=64)
    evidence_version: str = Field(max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))
    issued_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    received_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)


class SupersededRecommendation(SQLModel, table=True):
    """A recommendation replaced by a re-evaluation, and what changed (the re-evaluation report)."""

    __tablename__ = "superseded_recommendations"
    # Covers the re-evaluation report (counts by reason since a start): `reason` and `changed` sit
    # after the body in the row, so without it every count walked each body's overflow pages.
    __table_args__ = (Index("ix_superseded_recommendations_report", "superseded_at", "reason", "changed"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    recurrence_id: str = Field(max_length=128, index=True)
    version: int
    rules_version: str = Field(max_length=64)
    evidence_version: str = Field(max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))
    issued_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    superseded_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)
    reason: str = Field(max_length=255)  # which versions changed, e.g. "rules r1 → r2"
    changed: bool  # did the advice itself (status or options) change


class DeadLetterNotice(SQLModel, table=True):
    """A case's event that a stage dead-lettered, with the reason (fed by the `.dlq` topics)."""

    __tablename__ = "dead_letter_notices"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    recurrence_id: str = Field(max_length=128, index=True)
    version: int | None = None
    stage: str = Field(max_length=32)
    original_topic: str = Field(max_length=255)
    error_type: str = Field(max_length=128)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)


GENESIS_HASH = "0" * 64  # prev_hash of the first audit row


class AuditEntry(SQLModel, table=True):
    """Append-only audit trail, each row chained to the previous one by hash (see rnpc_gateway.audit).

    Database triggers refuse UPDATE and DELETE; `python -m rnpc_gateway.audit verify` detects an
    edit made by someone who dropped them."""

    __tablename__ = "audit_events"

    seq: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    recorded_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    action: str = Field(max_length=32)
    route: str = Field(max_length=255)
    subject: str = Field(max_length=255)
    client_id: str | None = Field(default=None, max_length=255)
    recurrence_id: str | None = Field(default=None, max_length=128, index=True)
    version: int | None = None
    status: int
    detail: str | None = Field(default=None, max_length=255)
    correlation_id: str = Field(max_length=64)
    purpose_of_use: str | None = Field(default=None, max_length=64)
    prev_hash: str = Field(max_length=64)
    row_hash: str = Field(max_length=64, unique=True)


class AuditChainHead(SQLModel, table=True):
    """One row (id 1): the last audit seq and hash. Appenders update it first, which serialises
    them (a row lock on PostgreSQL, the write lock on SQLite), so the chain never forks."""

    __tablename__ = "audit_chain_head"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int = Field(sa_type=BigInteger)
    row_hash: str = Field(max_length=64)
class SubscriptionState(SQLModel, table=True):
    """FHIR Subscription (R4 backport) bookkeeping: the last event number seen, and gaps."""

    __tablename__ = "fhir_subscription_states"

    subscription: str = Field(primary_key=True, max_length=255)
    topic: str | None = Field(default=None, max_length=255)
    status: str | None = Field(default=None, max_length=32)
    last_event_number: int | None = None
    gaps_detected: int = 0
    last_gap: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)


class PendingFhirEvents(SQLModel, table=True):
    """Subscription events known to exist and not ingested yet: their resources or the $events
    read-back could not be had (server down, not configured, too many at once, not returned).
    Retried in the background, with a capped backoff, until ingested or dismissed by an admin:
    a recurrence the EHR recorded is never dropped because its FHIR server failed once.

    A row is an inclusive range of event numbers; `focus` is set when the event's focus is known
    (then its resources are read directly, else the range is read back with $events)."""

    __tablename__ = "fhir_pending_events"

    id: int | None = Field(default=None, primary_key=True)
    subscription: str = Field(max_length=255, index=True)
    first_event: int = Field(sa_type=BigInteger)
    last_event: int = Field(sa_type=BigInteger)
    focus: str | None = Field(default=None, max_length=2048)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    attempts: int = 0
    noticed_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)
    next_attempt_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False, index=True)


class CdsFeedback(SQLModel, table=True):
    """One CDS Hooks feedback item (accepted / overridden) about a card we returned."""

    __tablename__ = "cds_feedback"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    service_id: str = Field(max_length=64, index=True)
    card_uuid: str = Field(max_length=64, index=True)
    outcome: str = Field(max_length=32)
    override_reason: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    accepted_suggestions: list[Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    outcome_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    received_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)


class CdsTokenUse(SQLModel, table=True):
    """`jti` of CDS Hooks JWTs already accepted (replays are refused) until their expiry."""

    __tablename__ = "cds_token_uses"

    issuer: str = Field(primary_key=True, max_length=255)
    jti: str = Field(primary_key=True, max_length=255)
    expires_at: datetime = Field(sa_type=UtcDateTime, nullable=False, index=True)
