"""The gateway's own tables: record versions, per-stage state, and the recommendation read model."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from rnpc_shared.db import UtcDateTime, utc_now
from rnpc_shared.kafka.tables import InboxEvent, OutboxEvent  # noqa: F401 - part of this service's schema


class RecordVersion(SQLModel, table=True):
    __tablename__ = "record_versions"
    __table_args__ = (UniqueConstraint("recurrence_id", "version"),)

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


class StageState(SQLModel, table=True):
    """Processing state of one record version at one stage (scoring, evidence, recommendation)."""

    __tablename__ = "stage_states"

    recurrence_id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    stage: str = Field(primary_key=True, max_length=32)
    state: str = Field(max_length=32)
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)


class RecommendationView(SQLModel, table=True):
    """Read model fed by rnpc.recommendation.issued.v1: one row per record version."""

    __tablename__ = "recommendation_views"
    __table_args__ = (UniqueConstraint("recurrence_id", "version"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    recurrence_id: str = Field(max_length=128, index=True)
    version: int
    status: str = Field(max_length=32)
    recommendation: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    issued_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    received_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)


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
