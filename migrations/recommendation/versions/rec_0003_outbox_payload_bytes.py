"""outbox.payload_bytes: the table-size gauge sums it from an index instead of reading every payload

Revision ID: rec_0003
Revises: rec_0002
Create Date: 2026-11-27 07:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'rec_0003'
down_revision: str | None = 'rec_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload_bytes', sa.Integer(), nullable=False, server_default='0'))
    # Rows written before: their size in characters (payloads are JSON, ASCII but for text fields).
    op.execute("UPDATE outbox SET payload_bytes = length(payload)")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('payload_bytes', server_default=None)
        batch_op.drop_index('ix_outbox_status_created')
        batch_op.create_index('ix_outbox_status_created', ['status', 'created_at', 'payload_bytes'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_status_created')
        batch_op.create_index('ix_outbox_status_created', ['status', 'created_at'], unique=False)
        batch_op.drop_column('payload_bytes')
