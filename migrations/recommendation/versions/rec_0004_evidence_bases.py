"""Events v2: the evidence bases announced on rnpc.evidence.base.v1, which a case's evidence names

Revision ID: rec_0004
Revises: rec_0003
Create Date: 2026-11-27 17:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import rnpc_shared.db

revision: str = 'rec_0004'
down_revision: str | None = 'rec_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'evidence_bases',
        sa.Column('evidence_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('base_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('base', sa.JSON(), nullable=False),
        sa.Column('received_at', rnpc_shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('evidence_version'),
    )


def downgrade() -> None:
    op.drop_table('evidence_bases')
