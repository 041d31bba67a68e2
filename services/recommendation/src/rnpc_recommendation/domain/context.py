"""The case as the rules read it: the record, the scores and the evidence, plus derived facts.

Score results follow the scoring service's conventions; a result that is absent or not
computable is treated as unknown (None), never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

from rnpc_shared.contracts.evidence import EvidenceBundle
from rnpc_shared.contracts.record import (
    LOCAL_MODALITIES,
    Extension,
    Histology,
    MCategory,
    Modality,
    RecurrenceRecord,
    ResourceMode,
    Site,
    TCategory,
)
from rnpc_shared.contracts.scores import ModelStatus, ScoreCategory, ScoreResult, Scores, Threshold

from rnpc_recommendation.domain.eligibility import (
    KPS_FIT_MIN,
    EnpAssessment,
    assess_enp,
    exact_curative_fit,
)
from rnpc_recommendation.domain.policy import Policy

# ECOG → KPS (MODELS.md §1: 0→90–100, 1→70–80, 2→50–60, 3→30–40, 4→10–20). The lower bound is
# the conservative reading: it never overstates fitness against a KPS ≥ 70 threshold.
ECOG_TO_KPS_RANGE: dict[int, tuple[int, int]] = {
    0: (90, 100),
    1: (70, 80),
    2: (50, 60),
    3: (30, 40),
    4: (10, 20),
}
ADVANCED_T = frozenset({"T3", "T4"})
NON_KERATINIZING_WHO = frozenset({Histology.who_type_2, Histology.who_type_3})


@dataclass(frozen=True)
class Kps:
    value: int
    from_ecog: int | None = None

    def describe(self) -> str:
        if self.from_ecog is None:
            return f"KPS {self.value}"
        low, high = ECOG_TO_KPS_RANGE[self.from_ecog]
        return (
            f"KPS {self.value} derived from ECOG {self.from_ecog} (mapped range {low}–{high}, "
            "lower bound used; MODELS.md §1)"
        )


@dataclass(frozen=True)
class CaseContext:
    record: RecurrenceRecord
    scores: Scores
    evidence: EvidenceBundle
    decision_on: date  # the day the recommendation is issued: imaging after it is no restaging
    policy: Policy = field(default_factory=Policy)
    # Every score model a rule read: the recommendation's basis lists them (FDA CDS criterion 4).
    reads: set[str] = field(default_factory=set, compare=False)

    # --- score results ---------------------------------------------------------------------
    def result(self, model_id: str) -> ScoreResult | None:
        self.reads.add(model_id)
        result = self.scores.results.get(model_id)
        return result if result is not None and result.computable else None

    def category(self, model_id: str) -> ScoreCategory | None:
        result = self.result(model_id)
        return result.category if result is not None else None

    def threshold(self, model_id: str, quantity: str) -> Threshold | None:
        """A model's threshold as scoring reported it, computable or not (never re-typed here)."""
        self.reads.add(model_id)
        result = self.scores.results.get(model_id)
        return result.threshold(quantity) if result is not None else None

    def model_status(self, model_id: str) -> ModelStatus | None:
        result = self.scores.results.get(model_id)
        return result.status if result is not None else None

    # --- disease -----------------------------------------------------------------------------
    @property
    def extension(self) -> Extension:
        return self.record.recurrence.extension or Extension()

    @property
    def t_category(self) -> TCategory | None:
        """The clinician's entry stands (MODELS.md §3); conflicts are shown, not resolved."""
        return self.record.recurrence.t_category

    @property
    def has_local_disease(self) -> bool:
        site = self.record.recurrence.site
        return site != Site.regional and self.t_category not in (None, TCategory.T0)

    @property
    def is_isolated_regional(self) -> bool:
        return not self.has_local_disease

    @property
    def is_m1(self) -> bool:
        return self.record.recurrence.m_category == MCategory.M1

    @property
    def t3_or_t4(self) -> bool:
        """Entered rT3–4, or derived rT3–4 from the extension flags: the more advanced reading."""
        derived = None
        stage = self.result("ajcc8_stage")
        if stage is not None:
            derived = stage.details.get("t_category_derived")
        return self.t_category in ADVANCED_T or derived in ADVANCED_T

    @property
    def staging_conflicts(self) -> list[str]:
        stage = self.result("ajcc8_stage")
        return [str(c) for c in stage.details.get("conflicts", [])] if stage is not None else []

    @property
    def keratinizing(self) -> bool | None:
        """Either keratinizing flag or WHO type I makes it keratinizing (the cautious reading)."""
        flag = self.record.recurrence.keratinizing
        histology = self.record.histology
        if flag is True or histology == Histology.who_type_1:
            return True
        if flag is False or histology in NON_KERATINIZING_WHO:
            return False
        return None

    @property
    def resectable(self) -> bool | None:
        return self.record.recurrence.resectable

    @property
    def nodal_disease(self) -> bool:
        recurrence = self.record.recurrence
        return recurrence.site != Site.local or recurrence.n_category != "N0"

    # cached: several rules read them; the context is immutable so caching is safe.
    @cached_property
    def enp(self) -> EnpAssessment:
        return assess_enp(self)

    @cached_property
    def curative_fit(self) -> str | None:
        return exact_curative_fit(self, self.enp)

    # --- patient -----------------------------------------------------------------------------
    @property
    def kps(self) -> Kps | None:
        patient = self.record.patient
        if patient.kps is not None:
            return Kps(patient.kps)
        if patient.ecog is not None:
            return Kps(ECOG_TO_KPS_RANGE[patient.ecog][0], from_ecog=patient.ecog)
        return None

    @property
    def poor_performance(self) -> bool | None:
        """KPS < 70 (Ward 2018 factor, seed §3 [19]); ECOG ≥ 2 maps to KPS ≤ 60 (MODELS.md §1)."""
        kps = self.kps
        return None if kps is None else kps.value < KPS_FIT_MIN

    @property
    def ward_class_iii(self) -> bool:
        return self.category("ward2018_rpa") == ScoreCategory.class_III

    @property
    def short_interval(self) -> bool | None:
        """< 2 years since prior RT: the only interval cut-off the sources give (Ward 2018)."""
        category = self.category("interval_since_rt")
        return None if category is None else category == ScoreCategory.short_interval

    # --- context -----------------------------------------------------------------------------
    @property
    def constrained(self) -> bool:
        context = self.record.context
        return context is not None and context.resource_mode == ResourceMode.constrained

    @property
    def available_modalities(self) -> frozenset[Modality] | None:
        context = self.record.context
        if context is None or context.available_modalities is None:
            return None
        return frozenset(context.available_modalities)

    def lacks(self, modality: Modality) -> bool:
        """True only when the centre stated its modalities and this local one is not among them.

        Systemic therapy and best supportive care are referrals every centre can make; the
        record's list covers local modalities only (MODELS.md §1).
        """
        available = self.available_modalities
        return available is not None and modality in LOCAL_MODALITIES and modality not in available

    def is_available(self, modality: Modality) -> bool | None:
        available = self.available_modalities
        return None if available is None else not self.lacks(modality)

    # --- radiobiology parameters (echoed by the scoring service) -------------------------------
    @property
    def alpha_beta_tumour_gy(self) -> float:
        return self.scores.parameters.alpha_beta_tumour_gy

    @property
    def alpha_beta_late_gy(self) -> float:
        return self.scores.parameters.alpha_beta_late_gy
