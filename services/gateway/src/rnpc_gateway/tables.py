"""The gateway's own tables: record versions, per-stage state, and the recommendation read model."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Text, UniqueConstraint
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
