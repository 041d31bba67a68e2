"""index of a patient's record versions (CDS Hooks and GuidanceResponse?subject= read by patient)

Revision ID: gat_0009
Revises: gat_0008
Create Date: 2026-11-27 09:20:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'gat_0009'
down_revision: str | None = 'gat_0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('record_versions', schema=None) as batch_op:
        batch_op.create_index('ix_record_versions_patient', ['patient_ref', 'recurrence_id', 'version'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('record_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_record_versions_patient')
