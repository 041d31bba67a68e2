"""Load the curated evidence base, data file evidence_v1.json (seed Tables 1-3 + post-review trials).

A data file is never edited in place once released: a new evidence version ships as a new file
and a new migration that replaces the rows, so every database can say exactly what it holds.

Revision ID: evi_0002
Revises: evi_0001
"""

import json
from collections.abc import Sequence
from importlib import resources

import sqlalchemy as sa
from alembic import op

revision: str = "evi_0002"
down_revision: str | None = "evi_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATA_FILE = "evidence_v1.json"

studies = sa.table(
    "studies",
    sa.column("study_id", sa.String),
    sa.column("evidence_version", sa.String),
    sa.column("modality", sa.String),
    sa.column("source_table", sa.String),
    sa.column("study", sa.JSON),
)


def upgrade() -> None:
    data = json.loads(resources.files("rnpc_evidence.data").joinpath(DATA_FILE).read_text(encoding="utf-8"))
    op.execute(studies.delete())
    op.bulk_insert(
        studies,
        [
            {
                "study_id": study["study_id"],
                "evidence_version": data["evidence_version"],
                "modality": study["modality"],
                "source_table": study["source_table"],
                "study": study,
            }
            for study in data["studies"]
        ],
    )


def downgrade() -> None:
    op.execute(studies.delete())
