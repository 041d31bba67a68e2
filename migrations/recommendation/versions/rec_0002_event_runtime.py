"""runtime v2: outbox status (parked rows), retention indexes, stage inputs

Revision ID: rec_0002
Revises: rec_0001
Create Date: 2026-11-26 23:59:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import rnpc_shared.db

revision: str = 'rec_0002'
down_revision: str | None = 'rec_0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default='pending'))
        batch_op.drop_index('ix_outbox_pending')
        batch_op.create_index('ix_outbox_status_created', ['status', 'created_at'], unique=False)
    op.execute("UPDATE outbox SET status = 'published' WHERE published_at IS NOT NULL")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('status', server_default=None)
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbox_processed_at'), ['processed_at'], unique=False)
    op.create_table('stage_inputs',
    sa.Column('recurrence_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('part', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('received_at', rnpc_shared.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('recurrence_id', 'version', 'part', name=op.f('pk_stage_inputs'))
    )
    with op.batch_alter_table('stage_inputs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stage_inputs_received_at'), ['received_at'], unique=False)
    with op.batch_alter_table('recommendations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('record_summary', sa.JSON(), nullable=False, server_default='{}'))

def downgrade() -> None:
    with op.batch_alter_table('recommendations', schema=None) as batch_op:
        batch_op.drop_column('record_summary')
    with op.batch_alter_table('stage_inputs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stage_inputs_received_at'))
    op.drop_table('stage_inputs')
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbox_processed_at'))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_status_created')
        batch_op.create_index('ix_outbox_pending', ['published_at', 'created_at'], unique=False)
        batch_op.drop_column('status')
