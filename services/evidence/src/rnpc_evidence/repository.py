"""Queries over the evidence service's tables."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Row

from sqlmodel import col, select
from sqlmodel import Session

from rnpc_evidence.domain.matching import evidence_base
from rnpc_evidence.tables import EvidenceMatch, StudyRow
from rnpc_shared.contracts.evidence import EvidenceBase, Study
from rnpc_shared.db import find_by_version
from rnpc_shared.problems import ProblemError


class Loaded(NamedTuple):
    evidence_version: str  # as loaded
    studies: list[Study]  # sorted by id
    base: EvidenceBase
    base_hash: str  # of the base's content: what a case's evidence event pins it by


# The evidence base per evidence version: a version id names its content (a new data set is
# loaded under a new version), so the studies are parsed, pooled and hashed once per version.
_BY_VERSION: dict[str, Loaded] = {}
_LOADED_VERSIONS = select(StudyRow.evidence_version).distinct()  # asked for on every match: built once


def loaded(session: Session) -> Loaded:
    """The evidence base as loaded by migration (one version at a time)."""
    versions = session.connection().execute(_LOADED_VERSIONS).scalars().all()
    if not versions:
        raise ProblemError(503, "Evidence base not loaded", "Run this service's migrations (alembic upgrade head).")
    if len(versions) != 1:
        raise ProblemError(503, "Evidence base inconsistent", f"several evidence versions loaded: {sorted(versions)}")
    version = versions[0]
    if version not in _BY_VERSION:
        rows = session.exec(select(StudyRow).order_by(col(StudyRow.study_id))).all()
        studies = [Study.model_validate(row.study) for row in rows]
        _BY_VERSION.clear()  # only the current version is ever needed again
        base = evidence_base(studies)
        _BY_VERSION[version] = Loaded(version, studies, base, base.content_hash())
    return _BY_VERSION[version]


def load_studies(session: Session) -> tuple[str, list[Study]]:
    """The evidence base as loaded by migration: (evidence_version, studies sorted by id)."""
    current = loaded(session)
    return current.evidence_version, list(current.studies)


def load_base(session: Session) -> EvidenceBase:
    """The current evidence version's matching base (parsed and pooled once per version)."""
    return loaded(session).base


def find_match(session: Session, recurrence_id: str, version: int) -> Row[Any] | None:
    """The version's evidence_matches row, if any."""
    return find_by_version(session, EvidenceMatch, recurrence_id, version)
