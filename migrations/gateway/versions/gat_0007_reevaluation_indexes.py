"""covering indexes of the re-evaluation: outdated cases and the report's counts

Revision ID: gat_0007
Revises: gat_0006
Create Date: 2026-11-27 06:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'gat_0007'
down_revision: str | None = 'gat_0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('recommendation_views', schema=None) as batch_op:
        batch_op.create_index('ix_recommendation_views_versions', ['recurrence_id', 'version', 'rules_version', 'evidence_version'], unique=False)
    with op.batch_alter_table('superseded_recommendations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_superseded_recommendations_superseded_at'))
        batch_op.create_index('ix_superseded_recommendations_report', ['superseded_at', 'reason', 'changed'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('superseded_recommendations', schema=None) as batch_op:
        batch_op.drop_index('ix_superseded_recommendations_report')
        batch_op.create_index(batch_op.f('ix_superseded_recommendations_superseded_at'), ['superseded_at'], unique=False)
    with op.batch_alter_table('recommendation_views', schema=None) as batch_op:
        batch_op.drop_index('ix_recommendation_views_versions')
