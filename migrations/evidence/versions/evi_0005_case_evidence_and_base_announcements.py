"""Events v2: a case's evidence names its evidence base instead of embedding it

evidence_matches.bundle (the whole evidence, ~80 KB per case) becomes evidence_matches.evidence
(a CaseEvidence: the case's notes, the evidence version and its base hash); the bases announced on
rnpc.evidence.base.v1 are recorded in evidence_base_announcements. Matches stored in the old shape
are marked outdated (evidence_version ''), so the next event of their case recomputes them.

Revision ID: evi_0005
Revises: evi_0004
Create Date: 2026-11-27 17:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import rnpc_shared.db

revision: str = 'evi_0005'
down_revision: str | None = 'evi_0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'evidence_base_announcements',
        sa.Column('evidence_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('base_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('announced_at', rnpc_shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('evidence_version'),
    )
    op.execute("UPDATE evidence_matches SET evidence_version = ''")
    with op.batch_alter_table('evidence_matches', schema=None) as batch_op:
        batch_op.alter_column('bundle', new_column_name='evidence')


def downgrade() -> None:
    # A v1 match embedded the whole bundle: mark the rows outdated, so they are recomputed.
    op.execute("UPDATE evidence_matches SET evidence_version = ''")
    with op.batch_alter_table('evidence_matches', schema=None) as batch_op:
        batch_op.alter_column('evidence', new_column_name='bundle')
    op.drop_table('evidence_base_announcements')
