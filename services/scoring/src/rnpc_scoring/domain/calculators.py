"""One pure compute function per contract model id, and `compute_scores` over all of them.

Every function is `(record, params) -> ScoreResult`. Figures come only from the cards. A model
missing a required input returns computable=False naming the dotted field paths; a model that
can still answer with part of its inputs stays computable and lists what was absent in
`missing_inputs` with a note saying how the answer is limited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from enum import Enum
from types import ModuleType
from typing import Any

from rnpc_shared.contracts.record import RecurrenceRecord, Sex
from rnpc_shared.contracts.scores import (
    MODEL_IDS,
    Operator,
    ScoreCategory,
    ScoreResult,
    Scores,
    ScoringParameters,
    Threshold,
)

from rnpc_scoring.domain import radiobiology as rb
from rnpc_scoring.domain.cards import (
    MODELS_VERSION,
    ajcc8,
    chua2006,
    cumulative_gtv_dose,
    eqd2_planned,
    eqd2_prior,
    interval,
    li2018,
    markers,
    tumour_volume,
    ward2018,
    you2015,
    yu2016,
)
from rnpc_scoring.domain.intervals import less_than_years, whole_calendar_months
from rnpc_scoring.domain.staging import Derivation, derive_n, derive_t, is_below, stage_group

ScoreFunction = Callable[[RecurrenceRecord, ScoringParameters], ScoreResult]

# Dotted paths of the inputs models most often miss.
RECURRENCE_DATE = "diagnosed_on"
PLANNED = "planned_reirradiation"
T_CATEGORY = "recurrence.t_category"
GTV = "recurrence.gtv_volume_cm3"
RECURRENCE_DATE_NOTE = "The interval needs diagnosed_on (or recorded_at when it is absent)."


# --- small helpers -------------------------------------------------------------------------


def _result(card: ModuleType, *, computable: bool, **fields: Any) -> ScoreResult:
    """A result stamped with the card's identity, status, citation and (copied) outcomes."""
    return ScoreResult(
        model=card.MODEL,
        version=card.VERSION,
        status=card.STATUS,
        computable=computable,
        citation=card.CITATION,
        reported_outcomes=[outcome.model_copy() for outcome in card.REPORTED_OUTCOMES],
        **fields,
    )


def _plain(value: Any) -> Any:
    """JSON-friendly form of a record value."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date):
        return value.isoformat()
    return value


def _inputs(record: RecurrenceRecord, paths: Iterable[str]) -> dict[str, Any]:
    """{dotted path: value} for the given record fields (None when absent)."""
    used: dict[str, Any] = {}
    for path in paths:
        value: Any = record
        for part in path.split("."):
            value = getattr(value, part, None) if value is not None else None
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json", exclude_none=True)
        used[path] = _plain(value)
    return used


def _gy(value: float) -> float:
    return round(value, 1)


def _at_least(value: float, threshold: float) -> bool:
    """value ≥ threshold, applied to the value as shown (0.1 precision) so that a displayed
    value and its category never disagree (e.g. 68.0 Gy is always "ge_68_gy")."""
    return _gy(value) >= threshold


def _label(number: float) -> str:
    """68.0 → '68', 145.5 → '145_5': thresholds as they appear in details keys."""
    return format(number, "g").replace(".", "_")


def _side(at_least: bool) -> ScoreCategory:
    return ScoreCategory.at_or_above_threshold if at_least else ScoreCategory.below_threshold


def _alpha_betas(params: ScoringParameters) -> dict[str, float]:
    return {
        "alpha_beta_tumour_gy": params.alpha_beta_tumour_gy,
        "alpha_beta_late_gy": params.alpha_beta_late_gy,
        "alpha_beta_cns_gy": params.alpha_beta_cns_gy,
    }


def _course_details(course: rb.Course, params: ScoringParameters) -> dict[str, Any]:
    dose, fractions = course.total_dose_gy, course.fractions
    return {
        "total_dose_gy": dose,
        "fractions": fractions,
        "dose_per_fraction_gy": round(course.dose_per_fraction_gy, 2),
        "eqd2_tumour_gy": _gy(rb.eqd2_gy(dose, fractions, params.alpha_beta_tumour_gy)),
        "bed_gy": _gy(rb.bed_gy(dose, fractions, params.alpha_beta_tumour_gy)),
        "eqd2_late_gy": _gy(rb.eqd2_gy(dose, fractions, params.alpha_beta_late_gy)),
        "bed_late_gy": _gy(rb.bed_gy(dose, fractions, params.alpha_beta_late_gy)),
        "eqd2_cns_gy": _gy(rb.eqd2_gy(dose, fractions, params.alpha_beta_cns_gy)),
        "bed_cns_gy": _gy(rb.bed_gy(dose, fractions, params.alpha_beta_cns_gy)),
        **_alpha_betas(params),
    }


def _prior_course(record: RecurrenceRecord) -> rb.Course:
    prior = record.prior_treatment
    return rb.Course(prior.rt_total_dose_gy, prior.rt_fractions)


def _planned_course(record: RecurrenceRecord) -> rb.Course | None:
    planned = record.planned_reirradiation
    return None if planned is None else rb.Course(planned.total_dose_gy, planned.fractions)


def _interval_months(record: RecurrenceRecord) -> int | None:
    recurrence_on = record.recurrence_date
    if recurrence_on is None:
        return None
    return whole_calendar_months(record.prior_treatment.rt_end_on, recurrence_on)


def _short_interval(record: RecurrenceRecord) -> bool | None:
    """Ward's "< 2 years" since prior RT, on calendar dates (seed §3 [19])."""
    recurrence_on = record.recurrence_date
    if recurrence_on is None:
        return None
    return less_than_years(record.prior_treatment.rt_end_on, recurrence_on,
                           ward2018.INTERVAL_YEARS)


def _interval_threshold(short: bool | None) -> Threshold:
    return Threshold(quantity="interval_since_rt", operator=Operator.lt,
                     value=ward2018.INTERVAL_YEARS, unit="years", met=short,
                     source=ward2018.INTERVAL_SOURCE)


def _t_conflicts(t_entered: str | None, derivation: Derivation) -> list[str]:
    if t_entered is None:
        return []
    findings = ", ".join(derivation.findings) or "no T2–T4 structure involved"
    if derivation.derived is not None:
        # Extension flags cannot tell T0 (no primary) from T1 (confined): both are consistent.
        if derivation.derived == t_entered or (t_entered, derivation.derived) == ("T0", "T1"):
            return []
        return [
            f"rT entered as {t_entered} but the extension flags give {derivation.derived} "
            f"({findings}); the entered {t_entered} is used"
        ]
    if derivation.minimum is not None and is_below(t_entered, derivation.minimum, ajcc8.T_ORDER):
        return [
            f"rT entered as {t_entered} but the extension flags indicate at least "
            f"{derivation.minimum} ({findings}); the entered {t_entered} is used"
        ]
    return []


def _n_conflicts(n_entered: str, derivation: Derivation) -> list[str]:
    conflicts = list(derivation.issues)
    if derivation.derived is not None and derivation.derived != n_entered:
        conflicts.append(
            f"rN entered as {n_entered} but the neck fields give {derivation.derived}; "
            f"the entered {n_entered} is used"
        )
    elif derivation.minimum is not None and is_below(n_entered, derivation.minimum, ajcc8.N_ORDER):
        conflicts.append(
            f"rN entered as {n_entered} but the neck fields indicate at least "
            f"{derivation.minimum}; the entered {n_entered} is used"
        )
    return conflicts


def _site_conflicts(site: str, t_category: str | None, n_category: str) -> list[str]:
    """The recurrence site should agree with rT (local disease) and rN (nodal disease)."""
    conflicts = []
    if site in ("local", "locoregional") and t_category == "T0":
        conflicts.append(f"recurrence.site is {site} but rT is T0 (no local tumour)")
    if site in ("regional", "locoregional") and n_category == "N0":
        conflicts.append(f"recurrence.site is {site} but rN is N0 (no nodal disease)")
    if site == "local" and n_category != "N0":
        conflicts.append(f"recurrence.site is local but rN is {n_category}")
    if site == "regional" and t_category not in (None, "T0"):
        conflicts.append(f"recurrence.site is regional but rT is {t_category}")
    return conflicts


def _t_fallback(derivation: Derivation) -> str | None:
    """Derived rT usable when none is entered: only one backed by positive findings (T2–T4),
    since "no structure involved" cannot tell T0 (regional only) from T1."""
    return derivation.derived if derivation.findings else None


def _t_used(record: RecurrenceRecord) -> tuple[str | None, list[str]]:
    """The clinician's rT, else the rT the extension flags conclude; plus any T conflict."""
    t_entered = _plain(record.recurrence.t_category)
    derivation = derive_t(record.recurrence.extension)
    return t_entered or _t_fallback(derivation), _t_conflicts(t_entered, derivation)


def _t_for_risk_index(record: RecurrenceRecord) -> tuple[str | None, list[str]]:
    """Li 2018's rT: the rT staged from the extension flags when it is more advanced than the
    entered one (a conflict), said in a note; otherwise as `_t_used`. Conservative reading: a
    risk index scores the more advanced of two conflicting rT, never the less advanced."""
    t_entered = _plain(record.recurrence.t_category)
    derivation = derive_t(record.recurrence.extension)
    t_used, conflicts = _t_used(record)
    from_flags = derivation.derived or derivation.minimum
    if (t_entered is not None and from_flags is not None and derivation.findings
            and is_below(t_entered, from_flags, ajcc8.T_ORDER)):
        return from_flags, [*conflicts, li2018.T_CONFLICT_NOTE.format(flags=from_flags,
                                                                      entered=t_entered)]
    return t_used, conflicts


def _date_paths(record: RecurrenceRecord) -> tuple[str, str]:
    """The two dates behind the interval: RT end and the recurrence date actually used."""
    source = "diagnosed_on" if record.diagnosed_on is not None else "recorded_at"
    return "prior_treatment.rt_end_on", source


# --- models ---------------------------------------------------------------------------------


def compute_interval_since_rt(record: RecurrenceRecord, params: ScoringParameters) -> ScoreResult:
    card = interval
    date_paths = _date_paths(record)
    date_source = date_paths[1]
    inputs_used = _inputs(record, date_paths)
    months = _interval_months(record)
    short = _short_interval(record)
    recurrence_on = record.recurrence_date
    if months is None or short is None or recurrence_on is None:
        return _result(card, computable=False, inputs_used=inputs_used,
                       missing_inputs=[RECURRENCE_DATE], notes=[RECURRENCE_DATE_NOTE],
                       thresholds=[_interval_threshold(None)])
    notes = [] if date_source == "diagnosed_on" else [
        "diagnosed_on not given: the date of recorded_at is used as the recurrence date."
    ]
    return _result(
        card, computable=True, value=months, unit="months",
        category=ScoreCategory.short_interval if short else ScoreCategory.long_interval,
        thresholds=[_interval_threshold(short)],
        details={
            "rt_end_on": record.prior_treatment.rt_end_on.isoformat(),
            "recurrence_date": recurrence_on.isoformat(),
            "recurrence_date_source": date_source,
            "cut_off_years": card.CUT_OFF_YEARS,
            "short_interval": short,
        },
        inputs_used=inputs_used, notes=notes,
    )


def compute_ajcc8_stage(record: RecurrenceRecord, params: ScoringParameters) -> ScoreResult:
    card = ajcc8
    recurrence = record.recurrence
    t_entered = _plain(recurrence.t_category)
    n_category = _plain(recurrence.n_category)
    m_entered = _plain(recurrence.m_category)
    t_derivation = derive_t(recurrence.extension)
    n_derivation = derive_n(recurrence.neck)
    t_used = t_entered or _t_fallback(t_derivation)
    conflicts = (
        _t_conflicts(t_entered, t_derivation)
        + _n_conflicts(n_category, n_derivation)
        + _site_conflicts(_plain(recurrence.site), t_used, n_category)
    )
    m_used = m_entered or "M0"
    group = stage_group(t_used, n_category, m_used)

    details = {
        "t_category": t_used,
        "t_category_entered": t_entered,
        "t_category_derived": t_derivation.derived,
        "t_category_minimum_from_flags": t_derivation.minimum,
        "t_flags_not_assessed": list(t_derivation.not_assessed),
        "n_category": n_category,
        "n_category_derived": n_derivation.derived,
        "m_category": m_used,
        "m_category_assumed": m_entered is None,
        "conflicts": conflicts,
    }
    inputs_used = _inputs(record, ("recurrence.site", T_CATEGORY, "recurrence.n_category",
                                   "recurrence.m_category", "recurrence.extension",
                                   "recurrence.neck"))
    notes = list(conflicts)
    missing: list[str] = []
    if m_entered is None:
        # Conservative reading: stage the M0 group but flag M as missing (restaging pending).
        missing.append("recurrence.m_category")
        notes.append("M not stated; assumed M0 pending PET/CT.")
    if t_entered is None and t_used is not None:
        notes.append(f"No rT entered: {t_used} derived from the extension flags.")
    if group is None:
        if t_used is None:
            missing.insert(0, T_CATEGORY)
            notes.append("Without rT a stage group is defined only for N3 (IVA) or M1 (IVB).")
        else:
            notes.append(f"{t_used} {n_category} M0 has no AJCC stage group.")
        return _result(card, computable=False, details=details, inputs_used=inputs_used,
                       missing_inputs=missing, notes=notes)
    return _result(card, computable=True, value=group, category=ScoreCategory(group),
                   details=details,
                   inputs_used=inputs_used, missing_inputs=missing, notes=notes)


def compute_eqd2_prior_course(record: RecurrenceRecord, params: ScoringParameters) -> ScoreResult:
    card = eqd2_prior
    course = _prior_course(record)
    eqd2 = rb.eqd2_gy(course.total_dose_gy, course.fractions, params.alpha_beta_tumour_gy)
    return _result(
        card, computable=True, value=_gy(eqd2), unit="Gy",
        details=_course_details(course, params),
        inputs_used=_inputs(record, ("prior_treatment.rt_total_dose_gy",
                                     "prior_treatment.rt_fractions")),
    )


def compute_eqd2_planned_course(record: RecurrenceRecord, params: ScoringParameters) -> ScoreResult:
    card = eqd2_planned
    inputs_used = _inputs(record, (PLANNED,))
    course = _planned_course(record)
    planned = record.planned_reirradiation
    threshold = Threshold(quantity="planned_eqd2", operator=Operator.ge, value=card.THRESHOLD_GY,
                          unit="Gy", source=card.CITATION)
    if course is None or planned is None:
        return _result(card, computable=False, inputs_used=inputs_used, missing_inputs=[PLANNED],
                       thresholds=[threshold])
    eqd2 = rb.eqd2_gy(course.total_dose_gy, course.fractions, params.alpha_beta_tumour_gy)
    label = _label(card.THRESHOLD_GY)
    at_least = _at_least(eqd2, card.THRESHOLD_GY)
    threshold.met = at_least
    fractions_per_day = planned.fractions_per_day
    notes = []
    if fractions_per_day > 1:
        notes.append("Incomplete repair between same-day fractions is not modelled.")
    return _result(
        card, computable=True, value=_gy(eqd2), unit="Gy",
        category=_side(at_least), thresholds=[threshold],
        details={**_course_details(course, params), "fractions_per_day": fractions_per_day,
                 "threshold_gy": card.THRESHOLD_GY, f"ge_{label}_gy": at_least},
        inputs_used=inputs_used, notes=notes,
    )


def compute_cumulative_gtv_dose(record: RecurrenceRecord, params: ScoringParameters) -> ScoreResult:
    card = cumulative_gtv_dose
    inputs_used = _inputs(record, ("prior_treatment.rt_total_dose_gy",
                                   "prior_treatment.rt_fractions", PLANNED))
    planned = _planned_course(record)
    # Echoed even when not computable: the rules check a suggested schedule against it.
    threshold = Threshold(quantity="accumulated_gtv_dose", operator=Operator.ge,
                          value=card.THRESHOLD_GY, unit="Gy", source=card.CITATION)
    if planned is None:
        return _result(card, computable=False, inputs_used=inputs_used, missing_inputs=[PLANNED],
                       thresholds=[threshold])
    prior = _prior_course(record)
    physical_total_gy = prior.total_dose_gy + planned.total_dose_gy
    eqd2_total = rb.cumulative_eqd2_gy(prior, planned, params.recovery_fraction,
                                       alpha_beta_gy=params.alpha_beta_tumour_gy)
    label = _label(card.THRESHOLD_GY)
    at_least = _at_least(physical_total_gy, card.THRESHOLD_GY)
    threshold.met = at_least
    return _result(
        card, computable=True, value=_gy(physical_total_gy), unit="Gy",
        category=_side(at_least), thresholds=[threshold],
        details={
            "physical_total_gy": _gy(physical_total_gy),
            "eqd2_cumulative_gy": _gy(eqd2_total),
            "recovery_fraction": params.recovery_fraction,
            "alpha_beta_tumour_gy": params.alpha_beta_tumour_gy,
            "threshold_gy": card.THRESHOLD_GY,
            f"ge_{label}_gy": at_least,
        },
        inputs_used=inputs_used,
        notes=[] if params.recovery_fraction else [
            "Recovery fraction R = 0: no recovery of the first course assumed (conservative)."
        ],
    )


def compute_li2018_prognostic_index(
    record: RecurrenceRecord, params: ScoringParameters
) -> ScoreResult:
    card = li2018
    gtv_cm3 = record.recurrence.gtv_volume_cm3
    grade3 = record.prior_treatment.grade3_toxicity
    t_used, t_conflicts = _t_for_risk_index(record)
    planned = _planned_course(record)
    planned_eqd2 = (None if planned is None else
                    rb.eqd2_gy(planned.total_dose_gy, planned.fractions,
                               params.alpha_beta_tumour_gy))
    eqd2_key = f"planned_eqd2_ge_{_label(card.PLANNED_EQD2_THRESHOLD_GY)}_gy"

    points: dict[str, float | None] = {
        "gtv_volume_cm3": None if gtv_cm3 is None else gtv_cm3 * card.POINTS_PER_CM3_GTV,
        "age_years": record.patient.age_years * card.POINTS_PER_YEAR_AGE,
        eqd2_key: None if planned_eqd2 is None else (
            card.POINTS_PLANNED_EQD2_GE_THRESHOLD
            if _at_least(planned_eqd2, card.PLANNED_EQD2_THRESHOLD_GY) else 0),
        "prior_grade3_toxicity": None if grade3 is None else (
            card.POINTS_PRIOR_GRADE3_TOXICITY if grade3 else 0),
        "rt3_4": None if t_used is None else (
            card.POINTS_RT3_4 if t_used in card.HIGH_RISK_T_CATEGORIES else 0),
    }
    missing = [path for path, known in ((GTV, gtv_cm3 is not None), (PLANNED, planned is not None),
                                        ("prior_treatment.grade3_toxicity", grade3 is not None),
                                        (T_CATEGORY, t_used is not None)) if not known]
    inputs_used = _inputs(record, (GTV, "patient.age_years", PLANNED,
                                   "prior_treatment.grade3_toxicity", T_CATEGORY))
    details: dict[str, Any] = {
        "points": points,
        "cut_off": card.HIGH_RISK_CUT_OFF,
        "planned_eqd2_gy": None if planned_eqd2 is None else _gy(planned_eqd2),
        "alpha_beta_tumour_gy": params.alpha_beta_tumour_gy,
        "t_category": t_used,
    }
    notes = [card.PROVISIONAL_NOTE, *t_conflicts]
    if _plain(record.recurrence.site) != "local":
        notes.append(card.SCOPE_NOTE)
    threshold = Threshold(quantity="li2018_index", operator=Operator.ge,
                          value=card.HIGH_RISK_CUT_OFF, unit="points", source=card.CITATION)
    if missing:
        return _result(card, computable=False, details=details, inputs_used=inputs_used,
                       missing_inputs=missing, notes=notes, thresholds=[threshold])
    index = round(sum(p for p in points.values() if p is not None), 1)  # shown value; the band is read from it
    threshold.met = index >= card.HIGH_RISK_CUT_OFF
    band = "high_risk" if threshold.met else "low_risk"
    details["distance_to_cut_off"] = round(index - card.HIGH_RISK_CUT_OFF, 1)
    return _result(card, computable=True, value=index, unit="points",
                   category=ScoreCategory(band), thresholds=[threshold],
                   details=details, inputs_used=inputs_used,
                   notes=[*notes, card.BAND_NOTES[band]])


def compute_ward2018_rpa(record: RecurrenceRecord, params: ScoringParameters) -> ScoreResult:
    card = ward2018
    months = _interval_months(record)
    short = _short_interval(record)
    if months is None or short is None:
        return _result(card, computable=False, missing_inputs=[RECURRENCE_DATE],
                       inputs_used=_inputs(record, _date_paths(record)),
                       notes=[RECURRENCE_DATE_NOTE], thresholds=[_interval_threshold(None)])
    longer = not short
    # Only one of the two second-level factors matters, depending on the interval branch.
    if longer:
        path = "prior_treatment.resected_before_reirradiation"
        factor = record.prior_treatment.resected_before_reirradiation
        rpa_class = None if factor is None else ("I" if factor else "II")
    else:
        path = "patient.organ_dysfunction"
        factor = record.patient.organ_dysfunction
        rpa_class = None if factor is None else ("III" if factor else "II")
    details = {"interval_months": months, "short_interval": short, path.split(".")[-1]: factor}
    inputs_used = _inputs(record, (*_date_paths(record), path))
    thresholds = [_interval_threshold(short)]
    if rpa_class is None:
        return _result(card, computable=False, details=details, inputs_used=inputs_used,
                       missing_inputs=[path], thresholds=thresholds)
    return _result(card, computable=True, value=rpa_class,
                   category=ScoreCategory(f"class_{rpa_class}"), thresholds=thresholds,
                   details=details, inputs_used=inputs_used,
                   notes=[card.CLASS_III_NOTE] if rpa_class == "III" else [])


def compute_tumour_volume(record: RecurrenceRecord, params: ScoringParameters) -> ScoreResult:
    card = tumour_volume
    gtv_cm3 = record.recurrence.gtv_volume_cm3
    inputs_used = _inputs(record, (GTV,))
    large = None if gtv_cm3 is None else gtv_cm3 > card.LARGE_ABOVE_CM3
    intermediate = None if gtv_cm3 is None else gtv_cm3 >= card.INTERMEDIATE_FROM_CM3
    thresholds = [
        Threshold(quantity=card.HAN_QUANTITY, operator=Operator.gt, value=card.LARGE_ABOVE_CM3,
                  unit="cm³", met=large, source=card._HAN),
        Threshold(quantity=card.XIAO_QUANTITY, operator=Operator.ge,
                  value=card.INTERMEDIATE_FROM_CM3, unit="cm³", met=intermediate,
                  source=card._XIAO),
    ]
    if gtv_cm3 is None:
        return _result(card, computable=False, inputs_used=inputs_used, missing_inputs=[GTV],
                       thresholds=thresholds)
    low, high = _label(card.INTERMEDIATE_FROM_CM3), _label(card.LARGE_ABOVE_CM3)
    if large:
        category = ScoreCategory.gtv_large
    elif intermediate:
        category = ScoreCategory.gtv_intermediate
    else:
        category = ScoreCategory.gtv_small
    return _result(card, computable=True, value=gtv_cm3, unit="cm3", category=category,
                   thresholds=thresholds,
                   details={f"gt_{high}_cm3": large, f"ge_{low}_cm3": intermediate},
                   inputs_used=inputs_used)


def compute_lethal_necrosis_factors(
    record: RecurrenceRecord, params: ScoringParameters
) -> ScoreResult:
    card = yu2016
    gtv_cm3 = record.recurrence.gtv_volume_cm3
    planned = _planned_course(record)
    accumulated_gy = (None if planned is None else
                      record.prior_treatment.rt_total_dose_gy + planned.total_dose_gy)
    sex, necrosis, dose, volume = card.FACTOR_NAMES
    factors: dict[str, bool | None] = {
        sex: record.patient.sex == Sex.female,
        necrosis: record.prior_treatment.mucosal_necrosis,
        dose: None if accumulated_gy is None else _at_least(
            accumulated_gy, card.ACCUMULATED_GTV_DOSE_THRESHOLD_GY),
        volume: None if gtv_cm3 is None else gtv_cm3 >= card.TUMOUR_VOLUME_THRESHOLD_CM3,
    }
    source_paths = {sex: "patient.sex", necrosis: "prior_treatment.mucosal_necrosis",
                    dose: PLANNED, volume: GTV}
    present = [name for name, value in factors.items() if value is True]
    missing = [source_paths[name] for name, value in factors.items() if value is None]
    notes = [card.PROVISIONAL_NOTE]
    if missing:
        notes.append("Some factors are unknown: the count is a lower bound.")
        category = (ScoreCategory.any_present if present
                    else ScoreCategory.none_present_incomplete)
    else:
        category = ScoreCategory.any_present if present else ScoreCategory.none_present
    thresholds = [
        Threshold(quantity="accumulated_gtv_dose", operator=Operator.ge,
                  value=card.ACCUMULATED_GTV_DOSE_THRESHOLD_GY, unit="Gy", met=factors[dose],
                  source=card.CITATION),
        Threshold(quantity="recurrent_tumour_volume", operator=Operator.ge,
                  value=card.TUMOUR_VOLUME_THRESHOLD_CM3, unit="cm³", met=factors[volume],
                  source=card.CITATION),
    ]
    return _result(
        card, computable=True, value=len(present), unit="factors", category=category,
        thresholds=thresholds,
        details={
            "factors": factors,
            "present": present,
            "accumulated_gtv_dose_gy": None if accumulated_gy is None else _gy(accumulated_gy),
            "accumulated_gtv_dose_threshold_gy": card.ACCUMULATED_GTV_DOSE_THRESHOLD_GY,
            "tumour_volume_threshold_cm3": card.TUMOUR_VOLUME_THRESHOLD_CM3,
        },
        inputs_used=_inputs(record, ("patient.sex", "prior_treatment.mucosal_necrosis",
                                     "prior_treatment.rt_total_dose_gy", PLANNED, GTV)),
        missing_inputs=missing, notes=notes,
    )


def compute_srs_suitability(record: RecurrenceRecord, params: ScoringParameters) -> ScoreResult:
    card = chua2006
    gtv_cm3 = record.recurrence.gtv_volume_cm3
    t_used, t_conflicts = _t_used(record)
    months = _interval_months(record)
    details = {
        "interval_months": months,
        "t_category": t_used,
        "gtv_volume_cm3": gtv_cm3,
        "max_volume_cm3": params.srs_max_volume_cm3,
    }
    inputs_used = _inputs(record, (*_date_paths(record), T_CATEGORY, GTV))
    notes = [card.PROVISIONAL_NOTE, *t_conflicts]
    missing = [path for path, value in ((T_CATEGORY, t_used), (GTV, gtv_cm3)) if value is None]
    if missing or gtv_cm3 is None:
        return _result(card, computable=False, details=details, inputs_used=inputs_used,
                       missing_inputs=missing, notes=notes)
    if months is None:  # reported factor only; the candidate rule does not use it
        missing.append(RECURRENCE_DATE)
        notes.append(RECURRENCE_DATE_NOTE)
    t_ok = t_used in card.CANDIDATE_T_CATEGORIES
    volume_ok = gtv_cm3 is not None and gtv_cm3 <= params.srs_max_volume_cm3
    details["t_category_ok"], details["volume_ok"] = t_ok, volume_ok
    category = ScoreCategory.candidate if t_ok and volume_ok else ScoreCategory.not_candidate
    volume_limit = Threshold(quantity="gtv_volume", operator=Operator.le,
                             value=params.srs_max_volume_cm3, unit="cm³", met=volume_ok,
                             source="MODELS.md §4.6 (configurable)")
    return _result(card, computable=True, value=category.value, category=category,
                   thresholds=[volume_limit], details=details,
                   inputs_used=inputs_used, missing_inputs=missing, notes=notes)


def compute_surgical_stage(record: RecurrenceRecord, params: ScoringParameters) -> ScoreResult:
    card = you2015
    stage = _plain(record.recurrence.surgical_stage)
    inputs_used = _inputs(record, ("recurrence.surgical_stage",))
    if stage is None:
        return _result(card, computable=False, inputs_used=inputs_used,
                       missing_inputs=["recurrence.surgical_stage"],
                       notes=["Lookup only: the surgical stage is entered by the clinician."])
    notes = [card.STAGE_NOTES[stage]] if stage in card.STAGE_NOTES else []
    return _result(card, computable=True, value=stage, category=ScoreCategory(f"stage_{stage}"),
                   details={"stage_name": card.STAGE_NAMES[stage]}, inputs_used=inputs_used,
                   notes=notes)


def compute_markers(record: RecurrenceRecord, params: ScoringParameters) -> ScoreResult:
    card = markers
    histology = _plain(record.histology)
    biomarkers = record.biomarkers
    ebv = None if biomarkers is None else biomarkers.ebv_dna_copies_per_ml
    nlr = None if biomarkers is None else biomarkers.nlr
    inputs_used = _inputs(record, ("histology", "biomarkers.ebv_dna_copies_per_ml",
                                   "biomarkers.nlr"))
    details: dict[str, Any] = {}
    summary: list[str] = []
    notes = [card.NOT_SCORED_NOTE]
    if histology is not None:
        favourable = histology == card.FAVOURABLE_WHO_TYPE
        details["who_type"] = {"value": histology, "type_iii": favourable,
                               "reported": card.WHO_TYPE_REPORTED}
        summary.append(histology)
    if ebv is not None:
        detectable = ebv > card.EBV_DNA_DETECTABLE_ABOVE_COPIES_PER_ML
        details["ebv_dna"] = {"copies_per_ml": ebv, "detectable": detectable,
                              "reported": card.EBV_DNA_REPORTED}
        summary.append(f"EBV DNA {'detectable' if detectable else 'undetectable'}")
    if nlr is not None:
        low_nlr = nlr <= card.NLR_CUT_OFF
        details["nlr"] = {"value": nlr, "cut_off": card.NLR_CUT_OFF,
                          f"le_{_label(card.NLR_CUT_OFF)}": low_nlr,
                          "reported": card.NLR_REPORTED, "direction_check": card.NLR_CHECK_NOTE}
        summary.append(f"NLR {nlr:g}")
        notes.append(card.NLR_CHECK_NOTE)
    missing = [path for path, value in inputs_used.items() if value is None]
    if not summary:
        return _result(card, computable=False, inputs_used=inputs_used, missing_inputs=missing,
                       notes=notes)
    return _result(card, computable=True, value="; ".join(summary), details=details,
                   inputs_used=inputs_used, missing_inputs=missing, notes=notes)


# --- all models -----------------------------------------------------------------------------

SCORE_FUNCTIONS: dict[str, ScoreFunction] = {
    "interval_since_rt": compute_interval_since_rt,
    "ajcc8_stage": compute_ajcc8_stage,
    "eqd2_prior_course": compute_eqd2_prior_course,
    "eqd2_planned_course": compute_eqd2_planned_course,
    "cumulative_gtv_dose": compute_cumulative_gtv_dose,
    "li2018_prognostic_index": compute_li2018_prognostic_index,
    "ward2018_rpa": compute_ward2018_rpa,
    "tumour_volume": compute_tumour_volume,
    "lethal_necrosis_factors": compute_lethal_necrosis_factors,
    "srs_suitability": compute_srs_suitability,
    "surgical_stage": compute_surgical_stage,
    "markers": compute_markers,
}
if set(SCORE_FUNCTIONS) != set(MODEL_IDS):
    raise RuntimeError("every contract model id needs exactly one compute function")


def compute_scores(record: RecurrenceRecord, params: ScoringParameters | None = None) -> Scores:
    """Every model's result for one record; parameters default to MODELS.md §2 and are echoed."""
    params = ScoringParameters() if params is None else params
    return Scores(
        results={model: SCORE_FUNCTIONS[model](record, params) for model in MODEL_IDS},
        models_version=MODELS_VERSION,
        parameters=params.model_copy(),
    )
