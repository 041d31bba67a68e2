"""Builders for the recommendation tests.

The scoring and evidence services may not be imported here (each service imports only
rnpc_shared and itself), so `build_scores` is a small stand-in that follows the scoring
service's published conventions (model ids, categories, details keys) and `build_evidence`
carries a few real rows of the seed's Tables 1–3. Tests reach the builders through the
session fixture `kit`, so Hypothesis tests may use them too.
"""

from __future__ import annotations

from functools import partial
from datetime import date
from types import SimpleNamespace
from typing import Any

import pytest
from rnpc_shared.contracts.evidence import (
    EvidenceBundle,
    ModalityEvidence,
    OutcomeMetric,
    PooledEstimate,
    Range,
    Study,
    StudyOutcome,
)
from rnpc_shared.contracts.record import LOCAL_MODALITIES, Modality, RecurrenceRecord
from rnpc_shared.contracts.scores import (
    ModelStatus,
    ReportedOutcome,
    ScoreResult,
    Scores,
    Threshold,
)

MODELS_VERSION = "models/test-1"
EVIDENCE_VERSION = "evidence/test-1"
UNKNOWN = "unknown"  # a score override meaning "not computable"

# A local rT1 recurrence within every Liu 2021 criterion, fully restaged, at a centre that
# states it offers every local modality. Vignettes change what they need.
BASE_RECORD: dict[str, Any] = {
    "recurrence_id": "vig-base",
    "patient_ref": "pt-test",
    "version": 1,
    "recorded_at": "2026-11-20T09:30:00Z",
    "diagnosed_on": "2026-11-18",
    "patient": {"age_years": 52, "sex": "male", "kps": 90, "organ_dysfunction": False},
    "histology": "who_type_3",
    "recurrence": {
        "site": "local",
        "t_category": "T1",
        "n_category": "N0",
        "m_category": "M0",
        "gtv_volume_cm3": 6.0,
        "extension": {
            "parapharyngeal": "none",
            "adjacent_soft_tissue": False,
            "skull_base_bone": False,
            "cervical_vertebra": False,
            "pterygoid_structures": False,
            "paranasal_sinuses": False,
            "cranial_nerves": False,
            "intracranial": False,
            "ica_encasement": False,
            "fossa_of_rosenmuller": False,
            "foramen_lacerum": False,
            "sphenoid_sinus": False,
            "nasal_cavity": False,
            "oropharynx": False,
            "hypopharynx": False,
            "orbit": False,
            "parotid": False,
            "beyond_lateral_pterygoid": False,
        },
        "resectable": True,
        "keratinizing": False,
    },
    "restaging": {"mri_on": "2026-11-10", "pet_ct_on": "2026-11-12", "endoscopy_on": "2026-11-08",
                  "biopsy_confirmed": True},
    "prior_treatment": {
        "rt_end_on": "2022-03-15",
        "rt_technique": "imrt",
        "rt_total_dose_gy": 70.0,
        "rt_fractions": 33,
        "grade3_toxicity": False,
        "mucosal_necrosis": False,
        "resected_before_reirradiation": False,
    },
    "context": {
        "resource_mode": "normal",
        "available_modalities": [m.value for m in LOCAL_MODALITIES],
    },
    "planned_reirradiation": {"total_dose_gy": 65.0, "fractions": 54, "fractions_per_day": 2},
}


# --- a stand-in for the scoring service (its conventions, not its code) -------------------------
# Thresholds and published outcomes travel with the results (as scoring reports them); the rules
# read them from there, so the figures below are this stand-in's copy of MODELS.md.

FACTOR_NAMES = (  # Yu 2016 lethal-necrosis factors (MODELS.md §4.5)
    "female_sex",
    "necrosis_before_reirradiation",
    "accumulated_gtv_dose_ge_145_5_gy",
    "volume_ge_25_38_cm3",
)
HAN, XIAO = "gtv_volume_han2012", "gtv_volume_xiao2015"  # tumour volume thresholds (MODELS.md §4.4)


def _threshold(quantity: str, operator: str, value: float, unit: str,
               met: bool | None) -> Threshold:
    return Threshold(quantity=quantity, operator=operator, value=value, unit=unit, met=met,
                     source="MODELS.md (test stand-in)")


def _outcome(group: str, label: str, low: float, high: float | None = None,
             unit: str = "%") -> ReportedOutcome:
    return ReportedOutcome(group=group, label=label, low=low, high=low if high is None else high,
                           unit=unit, source="MODELS.md (test stand-in)")


def _result(model: str, status: ModelStatus, *, value: Any = None, category: str | None = None,
            details: dict[str, Any] | None = None, missing: list[str] | None = None,
            thresholds: list[Threshold] | None = None,
            outcomes: list[ReportedOutcome] | None = None, computable: bool | None = None,
            ) -> ScoreResult:
    common = {"model": model, "version": "test", "status": status, "citation": "test stand-in",
              "thresholds": thresholds or [], "reported_outcomes": outcomes or []}
    if computable is None:
        computable = not missing
    if not computable:
        return ScoreResult(**common, computable=False, missing_inputs=missing or ["unknown"])
    return ScoreResult(**common, computable=True, value=value, category=category,
                       details=details or {}, missing_inputs=missing or [])


def _eqd2(total_gy: float, fractions: int, alpha_beta_gy: float = 10.0) -> float:
    return total_gy * (total_gy / fractions + alpha_beta_gy) / (2 + alpha_beta_gy)


def _months(start: date, end: date) -> int:
    """Whole calendar months (MODELS.md §2)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - 1 if end.day < start.day else months


def _under_two_years(start: date, end: date) -> bool:
    """Ward's "< 2 years" on dates (seed §3 [19]); 29 Feb's anniversary is 1 March."""
    try:
        anniversary = start.replace(year=start.year + 2)
    except ValueError:
        anniversary = date(start.year + 2, 3, 1)
    return end < anniversary


def _stage_group(t: str | None, n: str, m: str | None) -> str:
    """AJCC 8th stage groups (MODELS.md §3)."""
    if m == "M1":
        return "IVB"
    if t == "T4" or n == "N3":
        return "IVA"
    if n == "N2" or t == "T3":
        return "III"
    if t == "T2" or n == "N1":
        return "II"
    return "I"


def _side(at_least: bool) -> str:
    return "at_or_above_threshold" if at_least else "below_threshold"


LI_OUTCOMES = [_outcome("low_risk", "3-year OS", 69, 74), _outcome("high_risk", "3-year OS", 15, 31)]
WARD_OUTCOMES = [_outcome("class_III", "2-year OS", 16.8),
                 _outcome("class_III", "median OS", 7.9, unit="months")]


def build_scores(record: RecurrenceRecord, overrides: dict[str, Any] | None = None) -> Scores:
    """Scores following the scoring service's conventions. Overrides per model id: UNKNOWN
    (not computable), a ScoreResult, or a dict of fields to replace."""
    rec, prior, patient = record.recurrence, record.prior_treatment, record.patient
    exact, provisional = ModelStatus.exact, ModelStatus.provisional
    t = rec.t_category.value if rec.t_category else None
    r: dict[str, ScoreResult] = {}

    months = _months(prior.rt_end_on, record.recurrence_date)
    short = _under_two_years(prior.rt_end_on, record.recurrence_date)
    interval_cut = [_threshold("interval_since_rt", "<", 2, "years", short)]
    r["interval_since_rt"] = _result(
        "interval_since_rt", exact, value=months, thresholds=interval_cut,
        category="short_interval" if short else "long_interval")
    stage = _stage_group(t, rec.n_category, rec.m_category)
    r["ajcc8_stage"] = _result("ajcc8_stage", exact, value=stage, category=stage, details={
        "t_category": t, "t_category_entered": t, "t_category_derived": t,
        "n_category": rec.n_category.value, "m_category": rec.m_category, "conflicts": []})
    r["eqd2_prior_course"] = _result("eqd2_prior_course", exact,
                                     value=_eqd2(prior.rt_total_dose_gy, prior.rt_fractions),
                                     details={"alpha_beta_gy": 10.0})
    planned = record.planned_reirradiation
    planned_eqd2 = _eqd2(planned.total_dose_gy, planned.fractions) if planned else None
    if planned is None:
        r["eqd2_planned_course"] = _result(
            "eqd2_planned_course", exact, missing=["planned_reirradiation"],
            thresholds=[_threshold("planned_eqd2", ">=", 68.0, "Gy", None)])
        r["cumulative_gtv_dose"] = _result(
            "cumulative_gtv_dose", exact, missing=["planned_reirradiation"],
            thresholds=[_threshold("accumulated_gtv_dose", ">=", 145.5, "Gy", None)])
    else:
        r["eqd2_planned_course"] = _result(
            "eqd2_planned_course", exact, value=planned_eqd2, details={"alpha_beta_gy": 10.0},
            category=_side(planned_eqd2 >= 68),
            thresholds=[_threshold("planned_eqd2", ">=", 68.0, "Gy", planned_eqd2 >= 68)])
        total_gy = prior.rt_total_dose_gy + planned.total_dose_gy
        r["cumulative_gtv_dose"] = _result(
            "cumulative_gtv_dose", exact, value=total_gy, category=_side(total_gy >= 145.5),
            thresholds=[_threshold("accumulated_gtv_dose", ">=", 145.5, "Gy", total_gy >= 145.5)])
    r["li2018_prognostic_index"] = _li2018(record, planned_eqd2)
    r["ward2018_rpa"] = _ward(short, prior.resected_before_reirradiation,
                              patient.organ_dysfunction, interval_cut)
    volume = rec.gtv_volume_cm3
    volume_cuts = [_threshold(HAN, ">", 38.0, "cm³", None if volume is None else volume > 38),
                   _threshold(XIAO, ">=", 22.0, "cm³", None if volume is None else volume >= 22)]
    volume_outcomes = [_outcome(f"{HAN}:met", "5-year OS", 30.1),
                       _outcome(f"{HAN}:not_met", "5-year OS", 55.9),
                       _outcome(f"{XIAO}:met", "5-year OS", 20.8),
                       _outcome(f"{XIAO}:not_met", "5-year OS", 63.1)]
    srs_limit = [_threshold("gtv_volume", "<=", 10.0, "cm³",
                            None if volume is None else volume <= 10.0)]
    if volume is None:
        r["tumour_volume"] = _result("tumour_volume", exact, missing=["gtv_volume_cm3"],
                                     thresholds=volume_cuts, outcomes=volume_outcomes)
        r["srs_suitability"] = _result("srs_suitability", provisional, missing=["gtv_volume_cm3"])
    else:
        category = ("gtv_large" if volume > 38 else "gtv_intermediate" if volume >= 22
                    else "gtv_small")
        r["tumour_volume"] = _result("tumour_volume", exact, value=volume, category=category,
                                     thresholds=volume_cuts, outcomes=volume_outcomes,
                                     details={"gt_38_cm3": volume > 38, "ge_22_cm3": volume >= 22})
        srs = "candidate" if t in ("T1", "T2") and volume <= 10.0 else "not_candidate"
        r["srs_suitability"] = _result("srs_suitability", provisional, value=srs, category=srs,
                                       thresholds=srs_limit)
    r["lethal_necrosis_factors"] = _lethal(record, r["cumulative_gtv_dose"])
    if rec.surgical_stage is None:
        r["surgical_stage"] = _result("surgical_stage", ModelStatus.lookup_only,
                                      missing=["surgical_stage"])
    else:
        r["surgical_stage"] = _result(
            "surgical_stage", ModelStatus.lookup_only, value=rec.surgical_stage.value,
            category=f"stage_{rec.surgical_stage.value}",
            outcomes=[_outcome(f"stage_{s}", "5-year OS", pct) for s, pct in
                      (("I", 72.0), ("II", 55.1), ("III", 21.1), ("IV", 10.1))])
    r["markers"] = _result("markers", exact, value="informational")

    for model_id, override in (overrides or {}).items():
        if override == UNKNOWN:
            r[model_id] = _result(model_id, r[model_id].status, missing=["test: unknown"],
                                  thresholds=r[model_id].thresholds)
        elif isinstance(override, ScoreResult):
            r[model_id] = override
        else:
            r[model_id] = r[model_id].model_copy(update={"computable": True, **override})
    return Scores(results=r, models_version=MODELS_VERSION)


def _li2018(record: RecurrenceRecord, planned_eqd2: float | None) -> ScoreResult:
    """Li 2018 provisional points (MODELS.md §4.1): GTV mL + 2/yr + 35 + 64 + 67; high ≥ 252."""
    rec, prior = record.recurrence, record.prior_treatment
    inputs = {"gtv_volume_cm3": rec.gtv_volume_cm3, "planned_reirradiation": planned_eqd2,
              "grade3_toxicity": prior.grade3_toxicity, "t_category": rec.t_category}
    missing = [name for name, value in inputs.items() if value is None]
    cut = [_threshold("li2018_index", ">=", 252, "points", None)]
    if missing:
        return _result("li2018_prognostic_index", ModelStatus.provisional, missing=missing,
                       thresholds=cut, outcomes=LI_OUTCOMES)
    index = round(rec.gtv_volume_cm3 + 2 * record.patient.age_years
                  + (35 if planned_eqd2 >= 68 else 0) + (64 if prior.grade3_toxicity else 0)
                  + (67 if rec.t_category in ("T3", "T4") else 0))
    return li_result(index)


def li_result(index: float) -> ScoreResult:
    """A computable Li 2018 result for an index (band from the 252 cut-off, MODELS.md §4.1)."""
    high = index >= 252
    return _result("li2018_prognostic_index", ModelStatus.provisional, value=index,
                   category="high_risk" if high else "low_risk", details={"cut_off": 252},
                   thresholds=[_threshold("li2018_index", ">=", 252, "points", high)],
                   outcomes=LI_OUTCOMES)


def _ward(short: bool, resected: bool | None, organ_dysfunction: bool | None,
          thresholds: list[Threshold]) -> ScoreResult:
    """Ward 2018 RPA classes (MODELS.md §4.2; "< 2 years" on dates)."""
    klass = None
    if not short and resected is not None:
        klass = "I" if resected else "II"
    elif short and organ_dysfunction is not None:
        klass = "III" if organ_dysfunction else "II"
    if klass is None:
        return _result("ward2018_rpa", ModelStatus.exact, missing=["resected or organ_dysfunction"],
                       thresholds=thresholds, outcomes=WARD_OUTCOMES)
    return _result("ward2018_rpa", ModelStatus.exact, value=klass, category=f"class_{klass}",
                   thresholds=thresholds, outcomes=WARD_OUTCOMES)


NECROSIS_OUTCOMES = [_outcome("whole_cohort", "died of lethal nasopharyngeal necrosis (n=204)",
                              15.2)]


def _lethal(record: RecurrenceRecord, cumulative: ScoreResult) -> ScoreResult:
    """Yu 2016 factors (MODELS.md §4.5); the count is provisional, unknown factors are listed."""
    volume = record.recurrence.gtv_volume_cm3
    present_by_name = dict(zip(FACTOR_NAMES, (
        record.patient.sex == "female",
        record.prior_treatment.mucosal_necrosis,
        cumulative.category == "at_or_above_threshold" if cumulative.computable else None,
        volume >= 25.38 if volume is not None else None,
    ), strict=True))
    missing = [name for name, present in present_by_name.items() if present is None]
    present = [name for name, is_present in present_by_name.items() if is_present]
    category = "any_present" if present else (
        "none_present_incomplete" if missing else "none_present")
    return _result("lethal_necrosis_factors", ModelStatus.provisional, value=len(present),
                   category=category, computable=True, missing=missing,
                   details={"factors": present_by_name, "present": present},
                   outcomes=NECROSIS_OUTCOMES)


def with_provisional(scores: Scores, *, li: str | None, srs: str | None,
                     lethal: int | None) -> Scores:
    """The same scores with only the provisional models' outputs replaced (None = unknown)."""
    results = dict(scores.results)
    li_index = {"low_risk": 200, "high_risk": 300}
    results["li2018_prognostic_index"] = (
        _result("li2018_prognostic_index", ModelStatus.provisional, missing=["test: unknown"])
        if li is None else li_result(li_index[li])
    )
    results["srs_suitability"] = (
        _result("srs_suitability", ModelStatus.provisional, missing=["test: unknown"])
        if srs is None else _result("srs_suitability", ModelStatus.provisional, value=srs,
                                    category=srs)
    )
    results["lethal_necrosis_factors"] = (
        _result("lethal_necrosis_factors", ModelStatus.provisional, missing=["test: unknown"])
        if lethal is None
        else _result("lethal_necrosis_factors", ModelStatus.provisional, value=lethal,
                     category="any_present" if lethal else "none_present",
                     details={"present": list(FACTOR_NAMES[:lethal])})
    )
    return scores.model_copy(update={"results": results})


# --- evidence: a few real rows of the seed's tables ----------------------------------------------


def _study(study_id: str, table: str, ref: int, author: str, year: int, n: int, modality: Modality,
           outcomes: list[tuple[OutcomeMetric, float | None, float]]) -> Study:
    return Study(
        study_id=study_id, source_table=table, reference=ref, first_author=author, year=year, n=n,
        modality=modality, citation=f"seed Table {table} [{ref}]",
        outcomes=[StudyOutcome(metric=metric, horizon_years=years, percent=Range(low=pct, high=pct))
                  for metric, years, pct in outcomes],
    )


def build_evidence() -> EvidenceBundle:
    os_, lc, cm = OutcomeMetric.OS, OutcomeMetric.LC, OutcomeMetric.CM
    m = Modality
    studies = [  # seed Tables 1-3: id, table, reference, author, year, n, modality, outcomes
        _study("t1-chen-2009", "1", 46, "Chen", 2009, 37, m.enp, [(cm, None, 96), (os_, 2, 84)]),
        _study("t1-you-2015", "1", 37, "You", 2015, 72, m.enp, [(os_, 5, 77)]),
        _study("t1-chan-2015", "1", 60, "Chan", 2015, 338, m.msnp,
               [(cm, None, 79), (lc, 5, 74), (os_, 5, 62)]),
        _study("t2-tian-2017", "2", 79, "Tian", 2017, 245, m.reimrt, [(os_, 5, 27)]),
        _study("t3-chua-2006", "3", 89, "Chua", 2006, 48, m.srs, [(os_, 5, 47)]),
        _study("t3-seo-2009", "3", 95, "Seo", 2009, 35, m.sbrt, [(os_, 5, 60)]),
        _study("t3-dionisi-2019", "3", 103, "Dionisi", 2019, 17, m.proton,
               [(lc, 1.5, 66), (os_, 1.5, 54)]),
        _study("t3-hu-2018", "3", 108, "Hu", 2018, 75, m.carbon_ion, [(os_, 1, 98)]),
        _study("t3-leung-2005", "3", 113, "Leung", 2005, 34, m.brachytherapy,
               [(lc, 5, 97), (os_, 5, 78)]),
    ]
    by_modality: dict[Modality, ModalityEvidence] = {}
    for study in studies:
        bucket = by_modality.setdefault(study.modality, ModalityEvidence(modality=study.modality))
        bucket.studies.append(study)
    # One single-study figure standing in for a pooled estimate, labelled as such: it only checks
    # that pooled figures are carried through (the evidence service computes the real ones).
    by_modality[Modality.enp].pooled.append(PooledEstimate(
        modality=Modality.enp, metric="OS", horizon_years=2, k=1, total_n=37, percent=84.0,
        ci95_low_percent=84.0, ci95_high_percent=84.0, method="test fixture: one study, not pooled",
        study_ids=["t1-chen-2009"]))
    return EvidenceBundle(evidence_version=EVIDENCE_VERSION, by_modality=by_modality)


@pytest.fixture(scope="session")
def kit(record_builder) -> SimpleNamespace:  # noqa: ANN001 - from the root conftest.py
    return SimpleNamespace(
        build_record=partial(record_builder, BASE_RECORD), build_scores=build_scores, build_evidence=build_evidence,
        with_provisional=with_provisional, li_result=li_result, UNKNOWN=UNKNOWN, MODELS_VERSION=MODELS_VERSION,
        EVIDENCE_VERSION=EVIDENCE_VERSION,
    )
