"""Evidence shapes: studies from the seed's Tables 1-3 (and post-review trials) and pooled figures."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from pydantic import Field

from rnpc_shared.contracts.record import SHA256_HEX, Modality, Strict, model_hash


class OutcomeMetric(StrEnum):
    OS = "OS"  # overall survival
    LC = "LC"  # local control
    CM = "CM"  # clear microscopic margin
    CR = "CR"  # complete response
    LRFS = "LRFS"  # local relapse-free survival
    LFFS = "LFFS"  # local failure-free survival


class Range(Strict):
    """A published figure; low == high for a point value."""

    low: float
    high: float


class StudyOutcome(Strict):
    metric: OutcomeMetric
    horizon_years: float | None = Field(default=None, description="None for CR / CM (no horizon)")
    percent: Range


class Study(Strict):
    study_id: str
    source_table: str = Field(description="'1', '2', '3' (seed tables) or 'post-review'")
    reference: int | None = Field(default=None, description="Reference number in the seed")
    first_author: str
    year: int
    country: str | None = None
    endemic: bool | None = None
    cohort: str | None = None
    n: int | None = None
    modality: Modality
    technique: str | None = None
    median_follow_up_months: Range | None = None
    dose: str | None = None
    outcomes: list[StudyOutcome] = Field(default_factory=list)
    late_grade3_toxicity_percent: Range | None = None
    grade5_toxicity_percent: Range | None = None
    design: str | None = None
    notes: list[str] = Field(default_factory=list)
    citation: str


class PooledEstimate(Strict):
    modality: Modality
    metric: str = Field(description="An OutcomeMetric, or 'late_grade3_toxicity' / 'grade5_toxicity'")
    horizon_years: float | None = None
    subgroup: str | None = Field(default=None, description="e.g. 'endemic', 'non_endemic'")
    k: int
    total_n: int
    percent: float
    ci95_low_percent: float
    ci95_high_percent: float
    i2_percent: float | None = None
    tau2: float | None = None
    method: str
    study_ids: list[str]
    excluded: list[str] = Field(default_factory=list, description="Studies left out and why")


class ModalityEvidence(Strict):
    modality: Modality
    studies: list[Study] = Field(default_factory=list)
    pooled: list[PooledEstimate] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="What the seed says of the modality")
    case_notes: list[str] = Field(
        default_factory=list, description="Notes specific to this case (its rT, volume, scores)"
    )


class EvidenceBundle(Strict):
    evidence_version: str
    by_modality: dict[Modality, ModalityEvidence]


class ModalityBase(Strict):
    """What an evidence version holds for one modality, the same for every case."""

    modality: Modality
    studies: list[Study] = Field(default_factory=list)
    pooled: list[PooledEstimate] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="What the seed says of the modality")


class EvidenceBase(Strict):
    """One evidence version's studies, pooled figures and notes per modality: the part of every
    case's evidence that does not depend on the case. Announced once per version
    (rnpc.evidence.base.v1), so a case's evidence event names it instead of carrying it."""

    evidence_version: str
    by_modality: dict[Modality, ModalityBase]

    def content_hash(self) -> str:
        return model_hash(self)

    def bundle(self, case_notes: Mapping[Modality, list[str]]) -> EvidenceBundle:
        """A case's whole evidence: this base plus the case's notes (after the modality's own)."""
        return EvidenceBundle(
            evidence_version=self.evidence_version,
            by_modality={
                modality: ModalityEvidence(
                    modality=modality,
                    studies=base.studies,
                    pooled=base.pooled,
                    notes=[*base.notes, *case_notes.get(modality, [])],
                    case_notes=case_notes.get(modality, []),
                )
                for modality, base in self.by_modality.items()
            },
        )


class CaseEvidence(Strict):
    """One case's evidence as its event carries it: the case's notes per modality, on the
    evidence base named by version and pinned by the hash of its content."""

    evidence_version: str
    base_hash: str = Field(pattern=SHA256_HEX)
    case_notes: dict[Modality, list[str]]
