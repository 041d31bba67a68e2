"""Outbox and inbox tables; every service has both in its own database."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, Index, Table, Text
from sqlmodel import Field, SQLModel

from rnpc_shared.contracts.events import EVENT_ID_MAX_LENGTH
from rnpc_shared.db import UtcDateTime, utc_now


class OutboxStatus:
    pending = "pending"
    published = "published"
    parked = "parked"  # could never be sent (too large, or failed N times): set aside with its reason


class OutboxEvent(SQLModel, table=True):
    """An event written in the same transaction as the effect that caused it; the relay sends it."""

    __tablename__ = "outbox"
    # Serves the relay's claim (pending, oldest first) and retention (finished, oldest first), and
    # covers the table-size gauge (count and bytes are read from the index, not from the payloads).
    __table_args__ = (Index("ix_outbox_status_created", "status", "created_at", "payload_bytes"),)

    id: uuid.UUID = Field(primary_key=True, description="The CloudEvent id, fixed at write time")
    topic: str = Field(max_length=255)
    key: str = Field(max_length=255)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    # Written with the payload: summing the payloads' lengths read every byte of them (SQLite
    # walks each ~75 KB payload's overflow pages), 20 s a pass once an hour of events is kept.
    payload_bytes: int = 0
    created_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False)
    published_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    status: str = Field(default=OutboxStatus.pending, max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class InboxEvent(SQLModel, table=True):
    """Dedupe row: (consumer, event id) committed with the effect, so a redelivery is a no-op."""

    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=255)
    event_id: str = Field(primary_key=True, max_length=EVENT_ID_MAX_LENGTH)  # the envelope bounds the id
    topic: str = Field(max_length=255)
    partition: int
    offset: int
    processed_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False, index=True)


class StageInput(SQLModel, table=True):
    """One part (record, scores, evidence) of a stage's input, kept until the stage can run.

    Events are small: each carries its own result and a reference (recurrence_id, version,
    record content hash); a stage needing several results joins them here.
    """

    __tablename__ = "stage_inputs"

    recurrence_id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    part: str = Field(primary_key=True, max_length=32)
    content_hash: str = Field(max_length=64)
    data: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime, nullable=False, index=True)


# Their Core tables, for bulk statements (SQLModel sets __table__ when it builds the class; mypy
# cannot see it there).
OUTBOX_TABLE: Table = OutboxEvent.__table__  # type: ignore[attr-defined]
INBOX_TABLE: Table = InboxEvent.__table__  # type: ignore[attr-defined]
STAGE_INPUT_TABLE: Table = StageInput.__table__  # type: ignore[attr-defined]
