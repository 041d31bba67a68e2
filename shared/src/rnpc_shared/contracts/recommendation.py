"""Recommendation shape (contract "Recommendation")."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from rnpc_shared.contracts.evidence import PooledEstimate, Range, StudyOutcome
from rnpc_shared.contracts.record import Modality, Strict
from rnpc_shared.contracts.scores import ModelStatus, ScoreCategory, Threshold


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


class DependencyRole(StrEnum):
    status = "status"  # the model is part of the basis of the option's status
    ordering = "ordering"  # it moved the option within its status group
    warning = "warning"  # it added a warning or an explanatory reason only


class ModelDependency(Strict):
    """A scored model an option relies on. A provisional model never has the role `status`."""

    model: str
    status: ModelStatus
    role: DependencyRole


class Option(Strict):
    modality: Modality
    status: OptionStatus
    rank: int = Field(ge=1)
    reasons: list[Reason] = Field(min_length=1)
    warnings: list[str] = Field(default_factory=list)
    evidence: OptionEvidence = Field(default_factory=OptionEvidence)
    schedule: Schedule | None = None
    depends_on: list[ModelDependency] = Field(default_factory=list)


class Versions(Strict):
    rules: str
    models: str
    evidence: str


class PolicySetting(Strict):
    """An institutional policy the rules applied: a setting of this deployment, not a clinical
    figure from the sources."""

    name: str
    value: float | int | str
    unit: str | None = None
    kind: str = "institutional_policy"
    setting: str = Field(description="Where it is configured, e.g. an environment variable")
    text: str


class ScoreUsed(Strict):
    """A score result the rules read, as the scoring service reported it (compact)."""

    model: str
    version: str
    status: ModelStatus
    computable: bool
    value: float | int | str | None = None
    unit: str | None = None
    category: ScoreCategory | None = None
    thresholds: list[Threshold] = Field(default_factory=list)
    missing_inputs: list[str] = Field(default_factory=list)
    citation: str


class CitedStudy(Strict):
    """A study an option's evidence cites, with the figures it quotes as the paper reported them."""

    study_id: str
    citation: str
    n: int | None = None
    modality: Modality
    outcomes: list[StudyOutcome] = Field(default_factory=list)
    late_grade3_toxicity_percent: Range | None = None
    grade5_toxicity_percent: Range | None = None


class EvidenceNote(Strict):
    """A case-specific evidence note from the evidence service, for one modality."""

    modality: Modality
    text: str


class ProvisionalFlag(Strict):
    """A provisional model's output the rules read, what it touched, and that it decided nothing."""

    model: str
    value: float | int | str | None = None
    category: ScoreCategory | None = None
    options: list[Modality] = Field(default_factory=list)
    effect: str


class Basis(Strict):
    """Everything the recommendation rests on, so each claim can be checked without another call
    (FDA non-device CDS criterion 4)."""

    scores: list[ScoreUsed] = Field(default_factory=list)
    studies: list[CitedStudy] = Field(default_factory=list)
    evidence_notes: list[EvidenceNote] = Field(default_factory=list)
    provisional_flags: list[ProvisionalFlag] = Field(default_factory=list)


class Recommendation(Strict):
    recurrence_id: str
    version: int
    status: RecommendationStatus
    options: list[Option]
    required_workup: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    missing_assessments: list[str] = Field(
        default_factory=list, description="Inputs not assessed (null): never read as favourable"
    )
    policies: list[PolicySetting] = Field(default_factory=list)
    basis: Basis = Field(default_factory=Basis)
    versions: Versions
    input_hash: str = Field(
        description="SHA-256 of the canonical JSON {record: the record's content hash, scores: the "
        "scores' hash, evidence_version}: what the recommendation was computed from"
    )
    issued_at: AwareDatetime
    disclaimer: str = (
        "Decision support only: the multidisciplinary tumour board decides."
    )
