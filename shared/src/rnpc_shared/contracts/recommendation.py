"""Recommendation shape (contract "Recommendation")."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from rnpc_shared.contracts.evidence import PooledEstimate
from rnpc_shared.contracts.record import Modality, Strict


class RecommendationStatus(StrEnum):
    complete = "complete"
    workup_incomplete = "workup_incomplete"
    not_local_candidate = "not_local_candidate"


class OptionStatus(StrEnum):
    recommended = "recommended"
    consider = "consider"
    not_recommended = "not_recommended"
    contraindicated = "contraindicated"
    unavailable = "unavailable"


class Reason(Strict):
    rule: str
    text: str
    source: str


class Schedule(Strict):
    total_dose_gy: float
    fractions: int
    fractions_per_day: int = 1
    eqd2_gy: float
    alpha_beta_gy: float = 10.0
    label: str | None = None
    source: str | None = None


class OptionEvidence(Strict):
    study_ids: list[str] = Field(default_factory=list)
    pooled: list[PooledEstimate] = Field(default_factory=list)


class Option(Strict):
    modality: Modality
    status: OptionStatus
    rank: int = Field(ge=1)
    reasons: list[Reason] = Field(min_length=1)
    warnings: list[str] = Field(default_factory=list)
    evidence: OptionEvidence = Field(default_factory=OptionEvidence)
    schedule: Schedule | None = None


class Versions(Strict):
    rules: str
    models: str
    evidence: str


class Recommendation(Strict):
    recurrence_id: str
    version: int
    status: RecommendationStatus
    options: list[Option]
    required_workup: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    versions: Versions
    input_hash: str
    issued_at: AwareDatetime
    disclaimer: str = (
        "Decision support only: the multidisciplinary tumour board decides."
    )
