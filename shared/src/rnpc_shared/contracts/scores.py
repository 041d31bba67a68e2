"""Score results (contract "Scores"): one result per model id, every one self-describing."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from rnpc_shared.contracts.record import Strict


class ModelStatus(StrEnum):
    exact = "exact"
    provisional = "provisional"
    lookup_only = "lookup_only"


MODEL_IDS: tuple[str, ...] = (
    "interval_since_rt",
    "ajcc8_stage",
    "eqd2_prior_course",
    "eqd2_planned_course",
    "cumulative_gtv_dose",
    "li2018_prognostic_index",
    "ward2018_rpa",
    "tumour_volume",
    "lethal_necrosis_factors",
    "srs_suitability",
    "surgical_stage",
    "markers",
)


class ReportedOutcome(Strict):
    """A published outcome figure, e.g. 5-year OS 30.1% in the group '> 38 cm3'."""

    group: str | None = None
    label: str = Field(description="e.g. '5-year OS', 'median OS'")
    low: float
    high: float
    unit: str = Field(description="'%' or 'months'")
    source: str


class ScoreResult(Strict):
    model: str
    version: str
    status: ModelStatus
    computable: bool
    value: float | int | str | None = None
    unit: str | None = None
    category: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    inputs_used: dict[str, Any] = Field(default_factory=dict)
    missing_inputs: list[str] = Field(default_factory=list)
    reported_outcomes: list[ReportedOutcome] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    citation: str = Field(min_length=1)

    @model_validator(mode="after")
    def _computable_or_says_why(self) -> ScoreResult:
        if not self.computable and not self.missing_inputs and not self.notes:
            raise ValueError("a result that is not computable must name its missing inputs or why")
        return self


class ScoringParameters(Strict):
    """Radiobiology parameters, always echoed in the results (MODELS.md §2 defaults)."""

    alpha_beta_tumour_gy: float = Field(default=10.0, gt=0, le=30)
    alpha_beta_late_gy: float = Field(default=3.0, gt=0, le=30)
    alpha_beta_cns_gy: float = Field(default=2.0, gt=0, le=30)
    recovery_fraction: float = Field(default=0.0, ge=0, le=1, description="R in EQD2_1*(1-R)+EQD2_2")
    srs_max_volume_cm3: float = Field(default=10.0, gt=0, le=100)


class Scores(Strict):
    """`POST /v1/scores` answer and the scores part of the events."""

    results: dict[str, ScoreResult]
    models_version: str
    parameters: ScoringParameters = Field(default_factory=ScoringParameters)
