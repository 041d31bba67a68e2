"""Score results (contract "Scores"): one result per model id, every one self-describing."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator, model_validator

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


class ScoreCategory(StrEnum):
    """Typed result categories. No threshold is part of a name: the threshold a category was
    decided against travels in `ScoreResult.thresholds`, so rules never match a label that
    silently stops matching when a threshold changes."""

    # interval_since_rt (and the Ward interval branch): the seed's "< 2 years" vs "≥ 2 years"
    short_interval = "short_interval"
    long_interval = "long_interval"
    # eqd2_planned_course, cumulative_gtv_dose: the case's value against the model's threshold
    at_or_above_threshold = "at_or_above_threshold"
    below_threshold = "below_threshold"
    # li2018_prognostic_index
    high_risk = "high_risk"
    low_risk = "low_risk"
    # ward2018_rpa
    class_I = "class_I"  # noqa: N815 - the published class names
    class_II = "class_II"  # noqa: N815
    class_III = "class_III"  # noqa: N815
    # tumour_volume: above the upper threshold / between / below the lower threshold
    gtv_large = "gtv_large"
    gtv_intermediate = "gtv_intermediate"
    gtv_small = "gtv_small"
    # lethal_necrosis_factors
    any_present = "any_present"
    none_present = "none_present"
    none_present_incomplete = "none_present_incomplete"
    # srs_suitability
    candidate = "candidate"
    not_candidate = "not_candidate"
    # surgical_stage (lookup only)
    stage_I = "stage_I"  # noqa: N815
    stage_II = "stage_II"  # noqa: N815
    stage_III = "stage_III"  # noqa: N815
    stage_IV = "stage_IV"  # noqa: N815
    # ajcc8_stage: the AJCC 8th stage groups
    I = "I"  # noqa: E741
    II = "II"
    III = "III"
    IVA = "IVA"
    IVB = "IVB"


# Label strings of earlier releases, still accepted from events in flight (tolerant readers).
_LEGACY_CATEGORY_PATTERNS: tuple[tuple[str, ScoreCategory], ...] = (
    (r"le_\d+_months", ScoreCategory.short_interval),
    (r"gt_\d+_months", ScoreCategory.long_interval),
    (r"ge_[\d_]+_gy", ScoreCategory.at_or_above_threshold),
    (r"lt_[\d_]+_gy", ScoreCategory.below_threshold),
    (r"gt_[\d_]+_cm3", ScoreCategory.gtv_large),
    (r"[\d_]+_to_[\d_]+_cm3", ScoreCategory.gtv_intermediate),
    (r"lt_[\d_]+_cm3", ScoreCategory.gtv_small),
)


_CATEGORY_VALUES = frozenset(category.value for category in ScoreCategory)


class Operator(StrEnum):
    ge = ">="
    gt = ">"
    le = "<="
    lt = "<"


class Threshold(Strict):
    """A published cut-off a result was decided against: `<quantity> <operator> <value> <unit>`
    is the adverse (or named) side; `met` says whether this case is on it (None: unknown)."""

    quantity: str = Field(description="What is compared, e.g. 'accumulated_gtv_dose'")
    operator: Operator
    value: float
    unit: str
    met: bool | None = None
    source: str

    def describe(self) -> str:
        return f"{self.operator.value.replace('>=', '≥').replace('<=', '≤')} {self.value:g} {self.unit}"


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
    category: ScoreCategory | None = None
    thresholds: list[Threshold] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    inputs_used: dict[str, Any] = Field(default_factory=dict)
    missing_inputs: list[str] = Field(default_factory=list)
    reported_outcomes: list[ReportedOutcome] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    citation: str = Field(min_length=1)

    @field_validator("category", mode="before")
    @classmethod
    def _legacy_category(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in _CATEGORY_VALUES:
            for pattern, category in _LEGACY_CATEGORY_PATTERNS:
                if re.fullmatch(pattern, value):
                    return category
        return value

    def threshold(self, quantity: str) -> Threshold | None:
        return next((t for t in self.thresholds if t.quantity == quantity), None)

    def outcomes_for(self, group: str) -> list[ReportedOutcome]:
        return [outcome for outcome in self.reported_outcomes if outcome.group == group]

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
