"""The evidence service's own tables (plus the shared outbox and inbox)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from rnpc_shared.db import UtcDateTime, utc_now
from rnpc_shared.kafka.tables import InboxEvent, OutboxEvent  # noqa: F401 - part of this service's schema


class StudyRow(SQLModel, table=True):
    """One study cohort of the curated evidence base, loaded by a data migration."""

    __tablename__ = "studies"

    study_id: str = Field(primary_key=True, max_length=128)
    evidence_version: str = Field(max_length=64, index=True)
    modality: str = Field(max_length=32, index=True)
    source_table: str = Field(max_length=16)
    study: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class EvidenceMatch(SQLModel, table=True):
    """The evidence attached to one record version (a CaseEvidence: the case's notes on a named
    evidence base); computed once, re-emitted on a re-drive."""

    __tablename__ = "evidence_matches"
    __table_args__ = (UniqueConstraint("recurrence_id", "version"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    recurrence_id: str = Field(max_length=128, index=True)
    version: int
    evidence_version: str = Field(max_length=64)
    evidence: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)


class BaseAnnouncement(SQLModel, table=True):
    """An evidence version whose base was put in the outbox (rnpc.evidence.base.v1), in the same
    transaction as the first case's evidence on it: every case's event follows its base's."""

    __tablename__ = "evidence_base_announcements"

    evidence_version: str = Field(primary_key=True, max_length=64)
    base_hash: str = Field(max_length=64)
    announced_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)
