"""The scoring service's own tables (plus the shared outbox and inbox)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from rnpc_shared.db import UtcDateTime, utc_now
from rnpc_shared.kafka.tables import InboxEvent, OutboxEvent  # noqa: F401 - part of this service's schema


class ScoreSet(SQLModel, table=True):
    """All model results for one record version; computed once, re-emitted on a re-drive."""

    __tablename__ = "score_sets"
    __table_args__ = (UniqueConstraint("recurrence_id", "version"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    recurrence_id: str = Field(max_length=128, index=True)
    version: int
    content_hash: str = Field(max_length=64)
    models_version: str = Field(max_length=64)
    scores: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)
