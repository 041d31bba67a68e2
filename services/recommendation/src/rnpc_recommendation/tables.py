"""The recommendation service's own tables (plus the shared outbox and inbox)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from rnpc_shared.db import UtcDateTime, utc_now
from rnpc_shared.kafka.tables import InboxEvent, OutboxEvent  # noqa: F401 - part of this service's schema


class IssuedRecommendation(SQLModel, table=True):
    """Exactly one recommendation per record version, with its audit data (versions, input hash)."""

    __tablename__ = "recommendations"
    __table_args__ = (UniqueConstraint("recurrence_id", "version"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    recurrence_id: str = Field(max_length=128, index=True)
    version: int
    status: str = Field(max_length=32)
    input_hash: str = Field(max_length=64)
    rules_version: str = Field(max_length=64)
    models_version: str = Field(max_length=64)
    evidence_version: str = Field(max_length=64)
    recommendation: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # Kept so a re-drive re-emits the same self-contained event without the record.
    record_summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    issued_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)


class EvidenceBaseRow(SQLModel, table=True):
    """An evidence version's base (studies, pooled figures, general notes), as announced on
    rnpc.evidence.base.v1: a case's evidence event names it by version and hash."""

    __tablename__ = "evidence_bases"

    evidence_version: str = Field(primary_key=True, max_length=64)
    base_hash: str = Field(max_length=64)
    base: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)
