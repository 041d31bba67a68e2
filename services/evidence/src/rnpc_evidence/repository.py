"""Queries over the evidence service's tables."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_evidence.tables import EvidenceMatch, StudyRow
from rnpc_shared.contracts.evidence import Study
from rnpc_shared.db import find_by_version
from rnpc_shared.problems import ProblemError


async def load_studies(session: AsyncSession) -> tuple[str, list[Study]]:
    """The evidence base as loaded by migration: (evidence_version, studies sorted by id)."""
    rows = (await session.exec(select(StudyRow).order_by(col(StudyRow.study_id)))).all()
    if not rows:
        raise ProblemError(503, "Evidence base not loaded", "Run this service's migrations (alembic upgrade head).")
    versions = {row.evidence_version for row in rows}
    if len(versions) != 1:
        raise ProblemError(503, "Evidence base inconsistent", f"several evidence versions loaded: {sorted(versions)}")
    return versions.pop(), [Study.model_validate(row.study) for row in rows]


async def find_match(session: AsyncSession, recurrence_id: str, version: int) -> EvidenceMatch | None:
    return await find_by_version(session, EvidenceMatch, recurrence_id, version)
