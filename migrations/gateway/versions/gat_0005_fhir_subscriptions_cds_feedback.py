"""FHIR subscription states, CDS Hooks feedback and used JWT ids (issue 12)

Revision ID: gat_0005
Revises: gat_0004
Create Date: 2026-11-26 23:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import rnpc_shared.db

revision: str = 'gat_0005'
down_revision: str | None = 'gat_0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('fhir_subscription_states',
    sa.Column('subscription', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('last_event_number', sa.Integer(), nullable=True),
    sa.Column('gaps_detected', sa.Integer(), nullable=False),
    sa.Column('last_gap', sa.Text(), nullable=True),
    sa.Column('updated_at', rnpc_shared.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('subscription', name=op.f('pk_fhir_subscription_states'))
    )
    op.create_table('cds_feedback',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('card_uuid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('override_reason', sa.JSON(), nullable=True),
    sa.Column('accepted_suggestions', sa.JSON(), nullable=True),
    sa.Column('outcome_at', rnpc_shared.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('received_at', rnpc_shared.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cds_feedback'))
    )
    with op.batch_alter_table('cds_feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cds_feedback_card_uuid'), ['card_uuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_cds_feedback_service_id'), ['service_id'], unique=False)
    op.create_table('cds_token_uses',
    sa.Column('issuer', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('jti', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('expires_at', rnpc_shared.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('issuer', 'jti', name=op.f('pk_cds_token_uses'))
    )
    with op.batch_alter_table('cds_token_uses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cds_token_uses_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('cds_token_uses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cds_token_uses_expires_at'))
    op.drop_table('cds_token_uses')
    with op.batch_alter_table('cds_feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cds_feedback_service_id'))
        batch_op.drop_index(batch_op.f('ix_cds_feedback_card_uuid'))
    op.drop_table('cds_feedback')
    op.drop_table('fhir_subscription_states')
