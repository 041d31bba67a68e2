"""FHIR Subscription events kept to retry (fhir_pending_events)

Revision ID: gat_0010
Revises: gat_0009
Create Date: 2026-11-28 07:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import rnpc_shared.db

revision: str = 'gat_0010'
down_revision: str | None = 'gat_0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('fhir_pending_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('first_event', sa.BigInteger(), nullable=False),
    sa.Column('last_event', sa.BigInteger(), nullable=False),
    sa.Column('focus', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('noticed_at', rnpc_shared.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', rnpc_shared.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fhir_pending_events'))
    )
    with op.batch_alter_table('fhir_pending_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fhir_pending_events_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_fhir_pending_events_subscription'), ['subscription'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('fhir_pending_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fhir_pending_events_subscription'))
        batch_op.drop_index(batch_op.f('ix_fhir_pending_events_next_attempt_at'))
    op.drop_table('fhir_pending_events')
