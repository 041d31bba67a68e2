"""The decision rules of MODELS.md §5: each is data (id, version, source, scope) + a pure function.

A rule reads the case and returns Effects (status proposals, rank shifts, reasons, warnings,
required workup, schedules); it never sets an option's final status. The engine combines all
effects with the precedence in effects.py. Exactly one pathway rule (R1.m1_systemic,
R2.isolated_regional, R3.enp_within_reach, R4.beyond_enp_reach) fires per case and gives the
preference order; the others modify it.

Every figure below comes from MODELS.md or the seed review and names its source; thresholds and
published outcomes of scored models are read from the score results, never re-typed here.
Each conservative reading is named in the text it produces ("conservative reading: ...").
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from types import ModuleType
from typing import Any

from rnpc_shared.contracts.recommendation import OptionStatus, RecommendationStatus
from rnpc_shared.contracts.record import LOCAL_MODALITIES, Modality, Parapharyngeal
from rnpc_shared.contracts.scores import ScoreCategory, ScoreResult

from rnpc_recommendation.domain import context as context_module
from rnpc_recommendation.domain import effects as effects_module
from rnpc_recommendation.domain import eligibility as eligibility_module
from rnpc_recommendation.domain import policy as policy_module
from rnpc_recommendation.domain import schedules as schedules_module
from rnpc_recommendation.domain.context import CaseContext
from rnpc_recommendation.domain.effects import BACK, DOWN, FIRST, FRONT, Effects, Modalities
from rnpc_recommendation.domain.schedules import (
    BRACHY_HDR_INTRACAVITARY,
    REIMRT_HYPERFRACTIONATED,
    REIMRT_STANDARD,
    SBRT_SIX_FRACTIONS,
    SRS_SINGLE_FRACTION,
    eqd2_gy,
)

M = Modality
S = OptionStatus
RULES_RELEASE = "2026.11.2"

NASOPHARYNGEAL = (M.enp, M.tors, M.msnp, M.srs, M.sbrt, M.proton, M.carbon_ion, M.brachytherapy)
# Every re-irradiation modality: the fatal-haemorrhage predisposition (seed §5.4 [98]) is a
# property of the tumour's site, so it applies to each of them alike (issue 9).
REIRRADIATION = (M.reimrt, M.srs, M.sbrt, M.proton, M.carbon_ion, M.brachytherapy)
SURGERY = (M.enp, M.tors, M.msnp, M.neck_dissection)
SHORT_TECHNIQUES = (M.srs, M.sbrt, M.brachytherapy)  # MODELS.md §5.7
# Conservative reading: every local curative option counts as "intensive" for the KPS rule.
INTENSIVE_CURATIVE = LOCAL_MODALITIES

CURATIVE_IMRT_MIN_FRACTIONS = 20  # ASTRO-ESTRO 2020 consensus (seed §5.1 [119])

# Score model ids the rules read (their thresholds and reported outcomes come with the results).
LI2018 = "li2018_prognostic_index"
WARD = "ward2018_rpa"
INTERVAL = "interval_since_rt"
STAGE = "ajcc8_stage"
VOLUME = "tumour_volume"
NECROSIS = "lethal_necrosis_factors"
CUMULATIVE = "cumulative_gtv_dose"
SRS_SUITABILITY = "srs_suitability"
SURGICAL_STAGE = "surgical_stage"


def always(ctx: CaseContext) -> bool:
    return True


def m1(ctx: CaseContext) -> bool:
    return ctx.is_m1


def m0(ctx: CaseContext) -> bool:
    """Not M1 (M0 or M unknown: an unknown M is a workup item, R1.workup_gate)."""
    return not ctx.is_m1


def local_m0(ctx: CaseContext) -> bool:
    return not ctx.is_m1 and ctx.has_local_disease


@dataclass(frozen=True)
class Rule:
    id: str
    version: str
    source: str  # cited on every reason the rule gives unless the reason names a narrower one
    summary: str
    apply: Callable[[CaseContext], Effects]
    when: Callable[[CaseContext], bool] = always  # the population the rule speaks about

    def effects(self, ctx: CaseContext) -> Effects:
        return self.apply(ctx) if self.when(ctx) else Effects()


# --- shared pieces ------------------------------------------------------------------------------

ENP_SOURCE = "MODELS.md §5.3; Liu 2021, Lancet Oncol 22:381; seed §4.2, §6"
TORS_ICA_WARNING = (
    "TORS removes tactile feedback, which may increase the risk of iatrogenic ICA injury "
    "(seed §4.2 [40,48,51]); with skull-base involvement it may be combined with the "
    "transnasal endoscopic approach [51]."
)


def _outcome(result: ScoreResult | None, group: str, label: str) -> str | None:
    """A published outcome as the scoring result reports it, e.g. '15–31%' (None if absent)."""
    if result is None:
        return None
    for outcome in result.outcomes_for(group):
        if outcome.label == label:
            figure = f"{outcome.low:g}" if outcome.low == outcome.high else (
                f"{outcome.low:g}–{outcome.high:g}"
            )
            return f"{figure}{'' if outcome.unit == '%' else ' '}{outcome.unit}"
    return None


def _why_unknown(ctx: CaseContext, model_id: str) -> str:
    """Why a model gave no result, as the scoring service said it (for reasons and warnings)."""
    result = ctx.scores.results.get(model_id)
    if result is None:
        return " (not reported)"
    why = result.missing_inputs or result.notes
    return " (missing: " + ", ".join(why) + ")" if why else ""


def _systemic_and_supportive(e: Effects, ctx: CaseContext) -> None:
    """Systemic therapy / BSC for M0: excluded only when a local curative option fits exactly."""
    fit = ctx.curative_fit
    if fit is not None:
        e.propose(
            (M.systemic_therapy, M.best_supportive_care),
            S.not_recommended,
            f"Not as the sole treatment: {fit}. Systemic therapy, trials and best supportive care "
            "are for M1 or when no local curative option fits.",
            source="MODELS.md §5",
        )
        return
    e.propose(
        M.systemic_therapy,
        S.consider,
        "No local curative option fits on exact criteria alone: a clinical trial or systemic "
        "therapy (PD-1 inhibitors show promising responses in locally recurrent NPC) is "
        "discussed by the tumour board.",
        source="MODELS.md §5; seed §6 [124–126]",
    )
    e.propose(
        M.best_supportive_care,
        S.consider,
        "No local curative option fits on exact criteria alone: best supportive care is "
        "discussed as the alternative to intensive salvage, whose treatment-related mortality "
        "is high.",
        source="MODELS.md §5; seed §5 [72]",
    )


def _neck(e: Effects, ctx: CaseContext) -> None:
    if ctx.nodal_disease:
        e.propose(
            M.neck_dissection,
            S.consider,
            "Nodal component: neck dissection alongside the local salvage; radical, modified "
            "radical or selective dissection can all be considered.",
            source="seed §4.4 [63–71]",
        )
    else:
        e.propose(
            M.neck_dissection,
            S.not_recommended,
            "No regional recurrence recorded (site local, N0): neck dissection does not apply.",
            source="MODELS.md §5.2",
        )


def _propose_enp(e: Effects, ctx: CaseContext) -> None:
    enp = ctx.enp
    if enp.beyond_reach:
        e.propose(
            M.enp,
            S.not_recommended,
            "Beyond endoscopic reach: " + "; ".join(enp.beyond_reach) + ".",
            source=ENP_SOURCE,
        )
    elif enp.eligible:
        e.propose(
            M.enp,
            S.recommended,
            "Within Liu 2021 eligibility (rT1–2 or confined rT3, age 18–70, KPS ≥ 70, "
            "non-keratinizing). Phase 3: better OS and fewer severe complications than IMRT; "
            "superior to IMRT for rT1–3 in local control, QoL and complications.",
            source=ENP_SOURCE,
            models=(STAGE,),
        )
    else:
        unmet = [
            *(f"outside Liu 2021's regions: {item}" for item in enp.outside_anatomy),
            *enp.outside_patient,
            *(f"to confirm: {item}" for item in enp.to_confirm),
        ]
        e.propose(
            M.enp,
            S.consider,
            "ENP at 'consider': Liu 2021 criteria unmet or unknown — " + "; ".join(unmet) + ".",
            source=ENP_SOURCE,
        )
        if enp.outside_anatomy:
            e.note(
                M.enp,
                "Beyond Liu 2021's regions, endoscopic resection is the surgeon's judgement "
                "(3-D navigation eases skull-base resection).",
                source="seed §4.2 [49,50,53]",
            )
    for warning in enp.warnings:
        e.warn(M.enp, warning)
    if enp.kps_note is not None:
        e.note(M.enp, enp.kps_note, source="MODELS.md §1")


# --- R1 -------------------------------------------------------------------------------------------


def _imaging_problem(label: str, imaged_on: date | None, ctx: CaseContext) -> str | None:
    """Why a dated imaging study is not a current restaging, or None when it is one."""
    if imaged_on is None:
        return label
    rt_end_on = ctx.record.prior_treatment.rt_end_on
    if imaged_on <= rt_end_on:
        # Conservative reading: imaging on the RT end date itself is not after the first course.
        return (
            f"{label}: the one recorded ({imaged_on}) is not after the end of the prior RT "
            f"({rt_end_on}), so it is not a restaging"
        )
    if imaged_on > ctx.decision_on:
        return (
            f"{label}: the one recorded ({imaged_on}) is dated after the decision date "
            f"({ctx.decision_on}), so it is not a restaging"
        )
    recurrence_on = ctx.record.recurrence_date
    window_days = ctx.policy.restaging_window_days
    if recurrence_on is None:
        return (
            f"{label}: the recurrence diagnosis date is not recorded, so the age of the one "
            f"dated {imaged_on} cannot be checked (conservative reading: not accepted)"
        )
    if (recurrence_on - imaged_on).days > window_days:
        return (
            f"{label}: the one recorded ({imaged_on}) is more than {window_days} days before the "
            f"recurrence diagnosis ({recurrence_on}; institutional policy window)"
        )
    return None


def workup_gate(ctx: CaseContext) -> Effects:
    e = Effects()
    restaging = ctx.record.restaging
    problems = [
        problem
        for problem in (
            _imaging_problem(
                "MRI of the nasopharynx and skull base",
                restaging.mri_on if restaging else None,
                ctx,
            ),
            _imaging_problem(
                "whole-body PET/CT to exclude distant metastases",
                restaging.pet_ct_on if restaging else None,
                ctx,
            ),
        )
        if problem is not None
    ]
    if ctx.record.recurrence.m_category is None:
        problems.append("M category (M0/M1) from restaging")
    if restaging is None or restaging.biopsy_confirmed is not True:
        problems.append(
            "histological confirmation of the recurrence (biopsy confirmation not recorded)"
        )
    if not problems:
        return e
    e.case_status = RecommendationStatus.workup_incomplete
    e.required_workup += problems
    e.warnings.append(
        "Restaging incomplete: up to 56% of locally recurrent NPC have synchronous distant "
        "disease (seed §2). The ranking below is provisional until a current MRI and whole-body "
        "PET/CT and histological confirmation are recorded."
    )
    # The ranking is still shown; only the word "recommended" waits for the restaging.
    e.propose(
        LOCAL_MODALITIES,
        S.consider,
        "Restaging incomplete (" + "; ".join(problems) + "): every local curative option stays "
        "at 'consider' until distant disease is excluded and the recurrence is confirmed.",
    )
    return e


def m1_systemic(ctx: CaseContext) -> Effects:
    e = Effects()
    e.case_status = RecommendationStatus.not_local_candidate
    e.preference_order = (M.systemic_therapy, M.best_supportive_care, *LOCAL_MODALITIES)
    e.propose(LOCAL_MODALITIES, S.not_recommended, "M1 at restaging: no local curative option.")
    e.propose(
        M.systemic_therapy,
        S.recommended,
        "M1: refer for systemic therapy (PD-1 inhibitor + gemcitabine/cisplatin) and to the "
        "multidisciplinary tumour board.",
    )
    e.propose(
        M.best_supportive_care,
        S.consider,
        "M1: best supportive care is discussed with the tumour board alongside systemic therapy.",
    )
    e.warnings.append(
        "M1: not a local candidate. Refer to the multidisciplinary tumour board for systemic "
        "therapy (PD-1 inhibitor + gemcitabine/cisplatin)."
    )
    return e


# --- R2 -------------------------------------------------------------------------------------------


def isolated_regional(ctx: CaseContext) -> Effects:
    e = Effects()
    e.preference_order = (
        M.neck_dissection, M.reimrt, M.systemic_therapy, M.best_supportive_care, *NASOPHARYNGEAL,
    )
    of_choice = (
        "Neck dissection is the treatment of choice for isolated regional recurrence "
        "(5-year OS 41%)."
    )
    if ctx.resectable is False:
        e.propose(
            M.neck_dissection,
            S.not_recommended,
            "Surgeon's assessment: the neck is not resectable.",
        )
    elif ctx.record.recurrence.n_category == "N0":
        e.propose(
            M.neck_dissection,
            S.consider,
            of_choice + " To confirm: N0 is recorded for a regional recurrence.",
        )
    elif ctx.resectable is None:
        e.propose(
            M.neck_dissection,
            S.consider,
            of_choice + " To confirm: surgeon's resectability assessment.",
        )
    else:
        e.propose(M.neck_dissection, S.recommended, of_choice)
    e.note(M.neck_dissection, _neck_dissection_extent(ctx), source="seed §4.4 [64,69–71]")
    e.propose(
        M.reimrt,
        S.consider,
        "Re-irradiation is discussed only when neck dissection is not possible; the seed gives "
        "no neck-specific re-irradiation evidence.",
        source="seed §4.4, §5",
    )
    e.propose(
        NASOPHARYNGEAL,
        S.not_recommended,
        "No nasopharyngeal (local) recurrence recorded: nasopharyngeal salvage does not apply.",
    )
    _systemic_and_supportive(e, ctx)
    return e


def _neck_dissection_extent(ctx: CaseContext) -> str:
    neck = ctx.record.recurrence.neck
    if neck is not None and neck.node_count == 1:
        extent = (
            "Single node: selective neck dissection may suffice, with OS and DFS similar to "
            "radical dissection and less morbidity."
        )
    else:
        extent = (
            "Not a single node (or count unknown): radical or modified radical neck "
            "dissection; there is no uniform standard on the extent."
        )
    if neck is not None and neck.level_i is True:
        return extent + " Level I is involved: include level I."
    return extent + (
        " Level I is involved in only 4–5% of regional recurrences, so a level-I-sparing "
        "dissection may be considered."
    )


# --- R3 -------------------------------------------------------------------------------------------


def enp_within_reach(ctx: CaseContext) -> Effects:
    e = Effects()
    e.preference_order = (
        M.enp, M.reimrt, M.brachytherapy, M.srs, M.sbrt, M.tors, M.carbon_ion, M.proton, M.msnp,
        M.neck_dissection, M.systemic_therapy, M.best_supportive_care,
    )
    if ctx.t3_or_t4 and ctx.resectable is True:
        # Resectable rT3–4: maxillary swing before re-IMRT (MODELS.md §5.4; seed §4.3 [58–62]).
        e.preference_order = (
            M.enp, M.msnp, M.reimrt, M.brachytherapy, M.srs, M.sbrt, M.tors, M.carbon_ion,
            M.proton, M.neck_dissection, M.systemic_therapy, M.best_supportive_care,
        )
    _propose_enp(e, ctx)
    e.propose(
        M.tors,
        S.consider,
        "Transoral robotic nasopharyngectomy: an alternative surgical approach.",
        source="seed §4.2 [51]",
    )
    e.warn(M.tors, TORS_ICA_WARNING)
    e.propose(
        M.msnp,
        S.consider,
        "Maxillary swing is an open approach (severe complications up to 38%); ENP is "
        "preferred within its reach.",
        source="seed §4.3 [58–60]; Liu 2021",
    )
    e.propose(M.reimrt, S.consider, "Alternative to ENP: hyperfractionated re-IMRT.")
    _neck(e, ctx)
    _systemic_and_supportive(e, ctx)
    return e


def small_volume_techniques(ctx: CaseContext) -> Effects:
    """SRS/SBRT for small rT1–2 volumes; brachytherapy for small T1–T2 (MODELS.md §4.6, §5.3)."""
    e = Effects()
    if ctx.t3_or_t4:
        limit = (
            "rT3–4: SRS/SBRT are for small rT1–2 lesions only; precision techniques suit "
            "early-stage, low-volume foci."
        )
        e.propose(M.srs, S.not_recommended, limit, source="MODELS.md §4.6; seed §6",
                  models=(STAGE,))
        if ctx.ward_class_iii:
            e.propose(
                M.sbrt,
                S.consider,
                "Kept for Ward class III, where SBRT is preferred over a 7-week re-IMRT course.",
                source="MODELS.md §5.5; seed §5.4 [19]",
                models=(WARD,),
            )
            e.warn(
                M.sbrt, "rT3–4 is beyond the small rT1–2 volumes where SBRT is supported (seed §6)."
            )
        else:
            e.propose(M.sbrt, S.not_recommended, limit, source="MODELS.md §4.6; seed §6",
                      models=(STAGE,))
        e.propose(
            M.brachytherapy,
            S.not_recommended,
            "rT3–4: brachytherapy is for small rT1–2 recurrences.",
            source="seed §5.7 [72,113], §6",
            models=(STAGE,),
        )
        return e

    _srs_sbrt_for_early(e, ctx)
    e.propose(
        M.brachytherapy,
        S.consider,
        "rT1–2: for a small recurrence, interstitial or intracavitary brachytherapy may be "
        "comparable to ENP in local control and OS, with fewer severe complications than re-IMRT.",
        source="seed §5.7 [72,113]",
    )
    # The seed gives brachytherapy no volume of its own ("small T1–T2"; seed §6: "low-volume
    # recurrent foci only"): the conservative reading orders and warns by the SRS/SBRT limit.
    _order_by_small_volume(
        e, ctx, M.brachytherapy, "Brachytherapy",
        source="seed §5.7, §6; the SRS/SBRT small-volume limit of MODELS.md §4.6 as the conservative reading",
    )
    e.warn(
        M.brachytherapy,
        "Seed implantation expertise is generally restricted to specialised centres (seed §5.7).",
    )
    ext = ctx.extension
    beyond_nasopharynx = ext.parapharyngeal in (Parapharyngeal.superficial, Parapharyngeal.deep)
    if beyond_nasopharynx or ext.nasal_cavity or ext.oropharynx:
        e.warn(
            M.brachytherapy,
            "Local control is better for recurrences confined to the nasopharynx "
            "(Kwong 2001, seed [110]).",
        )
    return e


def _srs_sbrt_for_early(e: Effects, ctx: CaseContext) -> None:
    """SRS/SBRT stay at 'consider' for rT1–2; the provisional suitability only orders and warns."""
    both = (M.srs, M.sbrt)
    source = "MODELS.md §4.6 (Chua 2006, seed [89]; provisional)"
    e.propose(both, S.consider, "rT1–2: SRS/SBRT are considered for small volumes.", source=source)
    _order_by_small_volume(e, ctx, both, "SRS/SBRT", source=source)
    e.note(
        M.sbrt,
        "Fractionated SBRT: better 3-year local failure-free rate than SRS (83% vs 51%), "
        "similar OS.",
        source="seed §5.4 [91]",
    )


def _order_by_small_volume(e: Effects, ctx: CaseContext, modalities: Modalities, label: str, *, source: str) -> None:
    """Order and warn (never set a status: the suitability model is provisional) by whether the
    rT1–2 lesion is within the small-volume limit (MODELS.md §4.6, configurable)."""
    volume_cm3 = ctx.record.recurrence.gtv_volume_cm3
    volume = f"{volume_cm3:g} cm³" if volume_cm3 is not None else "volume not recorded"
    limit = ctx.threshold(SRS_SUITABILITY, "gtv_volume")
    limit_text = f"limit {limit.describe()}" if limit is not None else "limit not reported"
    suitability = ctx.result(SRS_SUITABILITY)
    if suitability is None:
        e.warn(
            modalities,
            f"{label} suitability not computable{_why_unknown(ctx, SRS_SUITABILITY)}: "
            "confirm a small volume first.",
            models=(SRS_SUITABILITY,),
        )
        e.shift(
            modalities,
            BACK,
            "Small volume not confirmed; conservative reading: ordered as not a candidate.",
            source=source,
            models=(SRS_SUITABILITY,),
        )
    elif suitability.category == ScoreCategory.candidate:
        e.note(
            modalities,
            f"Small-volume rT1–2 candidate ({volume}; {limit_text}; provisional).",
            source=source,
            models=(SRS_SUITABILITY,),
        )
    else:
        e.shift(
            modalities,
            BACK,
            "Not a small-volume candidate (provisional): moved down.",
            source=source,
            models=(SRS_SUITABILITY,),
        )
        e.warn(
            modalities,
            f"Not a small-volume candidate ({volume}; {limit_text}; provisional).",
            models=(SRS_SUITABILITY,),
        )


def surgical_stage(ctx: CaseContext) -> Effects:
    e = Effects()
    result = ctx.result(SURGICAL_STAGE)
    if result is None or result.value is None:
        return e
    stage = str(result.value)
    os_5y = _outcome(result, f"stage_{stage}", "5-year OS") or "not reported"
    text = (
        f"Surgical stage {stage}: 5-year OS {os_5y} after resection; ENP is favourable in stages "
        "I–II, IMRT in III (You 2015, seed [30])."
    )
    if stage in ("I", "II"):
        e.note(M.enp, text, models=(SURGICAL_STAGE,))
    else:
        e.warn((M.enp, M.msnp), text, models=(SURGICAL_STAGE,))
    return e


# --- R4 -------------------------------------------------------------------------------------------


def beyond_enp_reach(ctx: CaseContext) -> Effects:
    e = Effects()
    e.preference_order = (
        M.msnp, M.reimrt, M.carbon_ion, M.proton, M.sbrt, M.srs, M.enp, M.tors, M.brachytherapy,
        M.systemic_therapy, M.best_supportive_care, M.neck_dissection,
    )
    _propose_enp(e, ctx)
    ica = ctx.extension.ica_encasement is True
    if ctx.resectable is False:
        e.propose((M.tors, M.msnp), S.not_recommended, "Surgeon's assessment: not resectable.")
    else:
        if ica:
            e.propose(
                M.tors,
                S.not_recommended,
                "ICA encasement/exposure: " + TORS_ICA_WARNING,
                source="seed §4.2 [40,48,51]",
            )
        else:
            e.propose(
                M.tors,
                S.consider,
                "Transoral robotic nasopharyngectomy, possibly combined with the transnasal "
                "approach.",
                source="seed §4.2 [51]",
            )
            e.warn(M.tors, TORS_ICA_WARNING)
        msnp_text = (
            "Maxillary swing may be considered for selected resectable rT3–4 (5-year LC up to "
            "74%, OS up to 62%; severe complications up to 38%)."
        )
        if ctx.resectable is None:
            msnp_text += " To confirm: surgeon's resectability assessment."
        e.propose(M.msnp, S.consider, msnp_text, source="MODELS.md §5.4; seed §4.3 [58–62]")
        if ica:
            e.warn(
                M.msnp,
                "ICA encasement: resection needs extracranial–intracranial bypass expertise "
                "(seed §4.3 [61]).",
            )
    if ctx.resectable is True:
        e.shift(
            M.msnp,
            FIRST,
            "Resectable rT3–4: maxillary swing ranks before re-IMRT.",
            source="MODELS.md §5.4; seed §4 [34,37], §4.3 [58–62]",
        )
    e.propose(
        M.reimrt,
        S.consider,
        "Beyond ENP reach: re-IMRT, hyperfractionated 65 Gy/54 fx twice daily preferred, when the "
        "Li 2018 risk is low (MODELS.md §5.4). Conservative reading: the Li 2018 index is "
        "provisional, so its band orders re-IMRT and warns but never lifts it above 'consider'.",
        source="MODELS.md §4.1, §5.4",
    )
    _neck(e, ctx)
    _systemic_and_supportive(e, ctx)
    return e


def li2018_risk(ctx: CaseContext) -> Effects:
    """Li 2018 (provisional): orders re-IMRT within its status and warns; never sets a status."""
    e = Effects()
    result = ctx.result(LI2018)
    if result is None or result.category not in (ScoreCategory.high_risk, ScoreCategory.low_risk):
        e.warn(
            M.reimrt,
            f"Li 2018 index not computable{_why_unknown(ctx, LI2018)}: the risk band MODELS.md "
            "§5.4 asks for before re-IMRT is unknown.",
            models=(LI2018,),
        )
        _order_as_high_risk(
            e,
            "Li 2018 risk unknown; conservative reading: ordered as high risk, behind trial, "
            "systemic therapy and best supportive care of the same status.",
        )
        return e
    cut_off = result.threshold("li2018_index")
    index = (
        f"index {result.value} vs cut-off {cut_off.describe() if cut_off else 'not reported'}; "
        "provisional"
    )
    if result.category == ScoreCategory.low_risk:
        e.note(
            M.reimrt,
            f"Li 2018 low risk ({index}): ideal candidate for curative re-IMRT; 3-year OS "
            f"{_outcome(result, 'low_risk', '3-year OS')} (seed §3).",
            models=(LI2018,),
        )
        return e
    _order_as_high_risk(
        e,
        f"Li 2018 high risk ({index}): moved behind trial, systemic therapy and best supportive "
        "care of the same status.",
    )
    e.warn(
        M.reimrt,
        f"Li 2018 high risk (provisional): 3-year OS {_outcome(result, 'high_risk', '3-year OS')} "
        "after salvage re-IMRT (seed §3 [17]); offer a clinical trial.",
        models=(LI2018,),
    )
    e.note(
        M.best_supportive_care,
        "Li 2018 high risk (provisional): best supportive care is discussed.",
        models=(LI2018,),
    )
    return e


def _order_as_high_risk(e: Effects, text: str) -> None:
    e.shift(M.reimrt, BACK, text, models=(LI2018,))
    e.shift(
        M.systemic_therapy,
        FRONT,
        "Li 2018 high or unknown risk (provisional): a clinical trial or systemic therapy is "
        "discussed first.",
        models=(LI2018,),
    )


def particles_experimental(ctx: CaseContext) -> Effects:
    """Protons and carbon ions: at most 'consider' (seed §5.5, §5.6)."""
    e = Effects()
    e.propose(
        M.proton,
        S.consider,
        "At most 'consider': few series, short follow-up; the seed asks for more data and longer "
        "follow-up before refining its use in rNPC.",
        source="seed §5.5 [102,103]",
    )
    e.propose(
        M.carbon_ion,
        S.consider,
        "At most 'consider': carbon-ion therapy is still considered experimental; more data and "
        "long-term follow-up are needed.",
        source="seed §5.6 [104–108]",
    )
    if ctx.short_interval is True:
        interval = ctx.result(INTERVAL)
        months = interval.value if interval is not None else None
        cut = ctx.threshold(INTERVAL, "interval_since_rt")
        e.note(
            M.carbon_ion,
            f"Short interval since RT ({months} months, {cut.describe() if cut else 'short'}): "
            "carbon ions are 'a promising alternative' after a short interval (seed §5.6), "
            "where available.",
            source="MODELS.md §5.4; seed §5.6",
            models=(INTERVAL,),
        )
        e.shift(
            M.carbon_ion,
            FRONT,
            "Short interval since RT: carbon ions moved to the front of their status group.",
            source="MODELS.md §5.4; seed §5.6",
            models=(INTERVAL,),
        )
    return e


def reirradiation_schedules(ctx: CaseContext) -> Effects:
    e = Effects()
    e.schedules = {
        M.reimrt: REIMRT_HYPERFRACTIONATED,
        M.srs: SRS_SINGLE_FRACTION,
        M.sbrt: SBRT_SIX_FRACTIONS,
        M.brachytherapy: BRACHY_HDR_INTRACAVITARY,
    }
    alpha_beta_gy = ctx.alpha_beta_tumour_gy
    standard = REIMRT_STANDARD
    standard_eqd2_gy = eqd2_gy(standard.total_dose_gy, standard.fractions, alpha_beta_gy)
    hfx = REIMRT_HYPERFRACTIONATED
    e.note(
        M.reimrt,
        f"Hyperfractionated {hfx.total_dose_gy:g} Gy/{hfx.fractions} fx twice daily ≥ 6 h apart "
        f"preferred over the standard {standard.total_dose_gy:g} Gy/{standard.fractions} fx "
        f"(EQD2 {standard_eqd2_gy:.2f} Gy at α/β {alpha_beta_gy:g} Gy) for fewer severe late "
        "complications (You 2023); overall survival did not differ (median 34.8 vs 35.5 months, "
        "p = 0.603; seed §5.2 [87]).",
        source="MODELS.md §2, §5.4; You 2023, Lancet 401:917; seed §5.2 [87]",
    )
    return e


# --- R5 -------------------------------------------------------------------------------------------


def ward_class_iii(ctx: CaseContext) -> Effects:
    e = Effects()
    if not ctx.ward_class_iii:
        return e
    ward = ctx.result(WARD)
    e.propose(
        M.reimrt,
        S.consider,
        "Ward class III: SBRT is preferred over a 7-week re-IMRT course.",
        models=(WARD,),
    )
    e.shift(M.reimrt, BACK, "Ward class III: re-IMRT moved behind SBRT and palliation.",
            models=(WARD,))
    e.warn(
        M.reimrt,
        f"Ward class III: 2-year OS {_outcome(ward, 'class_III', '2-year OS')}, median OS "
        f"{_outcome(ward, 'class_III', 'median OS')} (Ward 2019; MODELS.md §4.2).",
        models=(WARD,),
    )
    e.shift(
        M.sbrt,
        FIRST,
        "Ward class III: SBRT generally preferred over re-IMRT (shorter course; no survival "
        "advantage expected).",
        source="seed §5.4 [19,100]",
        models=(WARD,),
    )
    e.shift(M.best_supportive_care, FIRST, "Ward class III: palliation is discussed.",
            models=(WARD,))
    return e


# --- R6 -------------------------------------------------------------------------------------------


def haemorrhage_hazard(ctx: CaseContext) -> Effects:
    """Fossa of Rosenmüller → foramen lacerum, or ICA encasement: every re-irradiation option."""
    e = Effects()
    ext = ctx.extension
    present = []
    # Foramen lacerum invasion alone counts: the FoR origin is typical and the record may omit it.
    if ext.foramen_lacerum is True:
        origin = "from the fossa of Rosenmüller " if ext.fossa_of_rosenmuller is True else ""
        present.append(f"invasion {origin}to the foramen lacerum")
    if ext.ica_encasement is True:
        present.append("ICA encasement/exposure")
    unknown = [
        label
        for value, label in (
            (ext.foramen_lacerum, "foramen lacerum invasion"),
            (ext.ica_encasement, "ICA encasement/exposure"),
        )
        if value is None
    ]
    if present:
        what = " and ".join(present)
        e.propose(
            REIRRADIATION,
            S.consider,
            f"Fatal haemorrhage hazard ({what}): no re-irradiation modality goes above "
            "'consider'; the tumour board weighs that risk.",
        )
        e.warn(
            REIRRADIATION,
            f"Risk of fatal haemorrhage: {what}. Tumours involving the fossa of Rosenmüller and "
            "invading deeply to the foramen lacerum are the most important predisposing factor; "
            "ICA exposure likewise (seed §5.4 [98]; MODELS.md §5.6).",
        )
    if unknown:
        what = " and ".join(unknown)
        e.propose(
            REIRRADIATION,
            S.consider,
            f"Fatal-haemorrhage factors not assessed ({what}). Conservative reading: an "
            "unassessed factor is not read as absent, so no re-irradiation modality goes above "
            "'consider' until MRI has assessed it.",
        )
        e.warn(
            REIRRADIATION,
            f"Not assessed: {what} — the fatal-haemorrhage predisposition cannot be excluded "
            "(seed §5.4 [98]).",
        )
    return e


def tumour_volume(ctx: CaseContext) -> Effects:
    """GTV above the published volume thresholds, stated on every re-irradiation option."""
    e = Effects()
    result = ctx.result(VOLUME)
    if result is None:
        return e
    for threshold in result.thresholds:
        if threshold.met is not True:
            continue
        met = _outcome(result, f"{threshold.quantity}:met", "5-year OS")
        not_met = _outcome(result, f"{threshold.quantity}:not_met", "5-year OS")
        e.warn(
            REIRRADIATION,
            f"GTV {result.value} cm³ ({threshold.describe()}): 5-year OS {met} vs {not_met} "
            f"below that volume ({threshold.source}).",
            models=(VOLUME,),
        )
    return e


def lethal_necrosis(ctx: CaseContext) -> Effects:
    e = Effects()
    result = ctx.result(NECROSIS)
    if result is None:
        e.warn(
            M.reimrt,
            f"Lethal nasopharyngeal necrosis factors not computable{_why_unknown(ctx, NECROSIS)} "
            "(Yu 2016, seed [88]).",
            models=(NECROSIS,),
        )
        return e
    cohort = next(iter(result.reported_outcomes), None)
    cohort_text = (
        f" {cohort.label}: {cohort.low:g}% ({cohort.source})." if cohort is not None else ""
    )
    present = [str(name) for name in result.details.get("present", [])]
    if present:
        e.warn(
            M.reimrt,
            f"Lethal nasopharyngeal necrosis risk factors present ({len(present)} of 4; count "
            "provisional): " + ", ".join(present) + "." + cohort_text,
            models=(NECROSIS,),
        )
    if result.missing_inputs:
        e.warn(
            M.reimrt,
            "Lethal-necrosis factors not assessed: " + ", ".join(result.missing_inputs)
            + " — unknown is not read as absent; the count is a lower bound (Yu 2016, seed [88]).",
            models=(NECROSIS,),
        )
    return e


def cumulative_gtv_dose(ctx: CaseContext) -> Effects:
    e = Effects()
    threshold = ctx.threshold(CUMULATIVE, "accumulated_gtv_dose")
    if threshold is None:
        e.warn(
            M.reimrt,
            "The accumulated GTV dose threshold was not reported by scoring: the lethal-necrosis "
            "dose factor (Yu 2016, seed [88]) is not checked.",
            models=(CUMULATIVE,),
        )
        return e
    planned = ctx.result(CUMULATIVE)
    if planned is not None and planned.category == ScoreCategory.at_or_above_threshold:
        text = (
            f"The planned schedule accumulates {float(planned.value or 0):g} Gy to the GTV (prior + "
            "planned), "
            f"{threshold.describe()}: a lethal-necrosis risk factor (Yu 2016, seed [88])."
        )
        e.warn(M.reimrt, text, models=(CUMULATIVE,))
        e.warnings.append(text)
    if ctx.has_local_disease:
        prior_gy = ctx.record.prior_treatment.rt_total_dose_gy
        suggested_gy = REIMRT_HYPERFRACTIONATED.total_dose_gy
        suggested_total_gy = prior_gy + suggested_gy
        if suggested_total_gy >= threshold.value:
            e.warn(
                M.reimrt,
                f"The suggested {suggested_gy:g} Gy schedule would accumulate "
                f"{suggested_total_gy:g} Gy to the GTV (prior {prior_gy:g} Gy), "
                f"{threshold.describe()}: a lethal-necrosis risk factor (Yu 2016, seed [88]).",
                models=(CUMULATIVE,),
            )
    return e


def performance_status(ctx: CaseContext) -> Effects:
    """KPS < 70 (or ECOG ≥ 2, mapped per MODELS.md §1): adverse; intensive options ≤ consider."""
    e = Effects()
    kps = ctx.kps
    if kps is None:
        e.missing_assessments.append("performance status (KPS or ECOG)")
        e.propose(
            INTENSIVE_CURATIVE,
            S.consider,
            "Performance status not assessed (neither KPS nor ECOG); KPS < 70 is an adverse "
            "factor (Ward 2018, seed §3 [19]). Conservative reading: no intensive curative "
            "option goes above 'consider' until it is assessed.",
        )
        e.warn(
            INTENSIVE_CURATIVE,
            "Not assessed: performance status (KPS or ECOG) — unknown is not read as fit.",
        )
        return e
    if ctx.poor_performance is not True:
        return e
    e.propose(
        INTENSIVE_CURATIVE,
        S.consider,
        f"{kps.describe()}: KPS < 70 is an adverse factor for OS (Ward 2018 RPA, seed §3 [19]); "
        "intensive curative treatment stays at 'consider' for the tumour board.",
    )
    e.warn(
        INTENSIVE_CURATIVE,
        f"Poor performance status ({kps.describe()}): KPS < 70 is an adverse prognostic factor "
        "(Ward 2018, seed §3 [19]).",
    )
    return e


# (dotted record path, what is not assessed, options it could change, local disease only)
NOT_ASSESSED: tuple[tuple[str, str, tuple[Modality, ...], bool], ...] = (
    ("recurrence.extension.ica_encasement", "ICA encasement/exposure",
     (*REIRRADIATION, M.enp, M.tors, M.msnp), True),
    ("recurrence.extension.foramen_lacerum", "foramen lacerum invasion", REIRRADIATION, True),
    ("recurrence.extension.fossa_of_rosenmuller", "fossa of Rosenmüller involvement",
     REIRRADIATION, True),
    ("prior_treatment.mucosal_necrosis",
     "nasopharyngeal mucosal necrosis before re-irradiation (Yu 2016 factor)", (M.reimrt,), True),
    ("recurrence.gtv_volume_cm3", "recurrent tumour volume (Yu 2016 factor; volume thresholds)",
     REIRRADIATION, True),
    ("prior_treatment.grade3_toxicity", "prior RT-induced grade ≥ 3 toxicity (Li 2018 covariate)",
     (M.reimrt,), True),
    ("recurrence.resectable", "surgeon's resectability assessment", SURGERY, False),
    ("recurrence.m_category", "M category from restaging", LOCAL_MODALITIES, False),
)


def _at_path(record: Any, path: str) -> Any:
    value = record
    for part in path.split("."):
        value = getattr(value, part, None) if value is not None else None
    return value


def not_assessed(ctx: CaseContext) -> Effects:
    """Unknown is never favourable: each null hazard/eligibility input is named on every option
    it could change, and listed on the case (the caps live in the rules that read the input)."""
    e = Effects()
    for path, label, options, local_only in NOT_ASSESSED:
        if local_only and not ctx.has_local_disease:
            continue
        if _at_path(ctx.record, path) is not None:
            continue
        e.missing_assessments.append(f"{label} ({path})")
        e.warn(options, f"Not assessed: {label} — unknown is not read as absent.")
    return e


# --- R7 -------------------------------------------------------------------------------------------

PRE_OPERATIVE_PROTOCOL = (
    "Before surgery: 14 days of home isolation or hospital quarantine and two negative "
    "SARS-CoV-2 rRT-PCR tests 24 h apart; if positive, postpone until symptoms resolve and two "
    "tests are negative; a delay of up to 12 weeks is acceptable for rNPC (seed §4.1 [40–43])."
)


def constrained_resources(ctx: CaseContext) -> Effects:
    e = Effects()
    if not ctx.constrained:
        return e
    e.warnings.append(
        "Constrained resources (pandemic mode): ENP (one admission) and short techniques "
        "(SRS, SBRT, brachytherapy) are preferred; curative IMRT is not given in under 20 "
        "fractions."
    )
    e.shift(
        M.enp,
        FRONT,
        "Constrained resources: ENP avoids repeated hospital visits (one admission).",
        source="MODELS.md §5.7; seed §5.1 [121], §6",
    )
    e.shift(
        SHORT_TECHNIQUES,
        FRONT,
        "Constrained resources: short techniques lower cross-contamination risk.",
        source="MODELS.md §5.7; seed §6",
    )
    e.shift(
        (M.reimrt, M.proton, M.carbon_ion),
        DOWN,
        "Constrained resources: a 6–7-week course or heavy-ion therapy carries more "
        "cross-contamination risk.",
        source="seed §6",
    )
    surgery = (M.enp, M.tors, M.msnp) if ctx.has_local_disease else ()
    e.warn((*surgery, M.neck_dissection) if ctx.nodal_disease else surgery, PRE_OPERATIVE_PROTOCOL)
    e.warn(
        M.enp,
        "Endoscopic surgery with constant irrigation and HEPA-filtered smoke, fluid and blood "
        "suction (seed §4.2 [57]).",
    )
    e.warn(
        M.reimrt,
        f"Curative IMRT is not given in under {CURATIVE_IMRT_MIN_FRACTIONS} fractions "
        "(ASTRO-ESTRO 2020, seed §5.1 [119]).",
    )
    planned = ctx.record.planned_reirradiation
    if planned is not None and planned.fractions < CURATIVE_IMRT_MIN_FRACTIONS:
        e.warn(
            M.reimrt,
            f"The planned course has {planned.fractions} fractions: under the "
            f"{CURATIVE_IMRT_MIN_FRACTIONS}-fraction minimum if it is curative IMRT.",
        )
    return e


# --- R8 / R0 ------------------------------------------------------------------------------------


def availability(ctx: CaseContext) -> Effects:
    e = Effects()
    if ctx.available_modalities is None:
        e.warnings.append(
            "The centre's available modalities were not stated: no option is marked unavailable."
        )
        return e
    e.unavailable = [m for m in LOCAL_MODALITIES if ctx.lacks(m)]
    return e


def record_notes(ctx: CaseContext) -> Effects:
    e = Effects()
    for conflict in ctx.staging_conflicts:
        e.warnings.append(f"Staging conflict (the clinician's rT entry stands): {conflict}")
    kps = ctx.kps
    if kps is not None and kps.from_ecog is not None:
        e.warnings.append(kps.describe())
    return e


def _pathway_regional(ctx: CaseContext) -> bool:
    return m0(ctx) and ctx.is_isolated_regional


def _pathway_within_reach(ctx: CaseContext) -> bool:
    return local_m0(ctx) and ctx.enp.within_reach


def _pathway_beyond_reach(ctx: CaseContext) -> bool:
    return local_m0(ctx) and not ctx.enp.within_reach


RULES: tuple[Rule, ...] = (
    Rule("R0.record_notes", "1", "MODELS.md §1, §3",
         "Staging conflicts and a derived KPS are shown.", record_notes),
    Rule("R1.workup_gate", "2", "MODELS.md §5.1; seed §2; restaging window: institutional policy",
         "A current MRI and whole-body PET/CT (after the prior RT, not after the decision, within "
         "the policy window before the diagnosis) and histology before any curative decision.",
         workup_gate),
    Rule("R1.m1_systemic", "1", "MODELS.md §5.1",
         "M1: systemic therapy and tumour board; no local curative option.", m1_systemic,
         when=m1),
    Rule("R2.isolated_regional", "1", "MODELS.md §5.2; seed §4.4 [63]",
         "Isolated regional recurrence: neck dissection.", isolated_regional,
         when=_pathway_regional),
    Rule("R3.enp_within_reach", "2", "MODELS.md §5.3; Liu 2021, Lancet Oncol 22:381",
         "Within ENP reach: ENP, with radiation alternatives; resectable rT3–4: MSNP before "
         "re-IMRT.", enp_within_reach, when=_pathway_within_reach),
    Rule("R3.small_volume_techniques", "2", "MODELS.md §4.6, §5.3; seed §5.3–5.4, §5.7, §6",
         "SRS/SBRT and brachytherapy for small rT1–2 only; the provisional suitability only "
         "orders and warns.", small_volume_techniques, when=local_m0),
    Rule("R3.surgical_stage", "2", "MODELS.md §4.3; You 2015, seed [30]",
         "Surgical stage informs ENP (lookup only).", surgical_stage, when=local_m0),
    Rule("R4.beyond_enp_reach", "2", "MODELS.md §5.4; seed §4.3 [58–62]",
         "Beyond ENP reach: MSNP first if resectable, re-IMRT at 'consider'.", beyond_enp_reach,
         when=_pathway_beyond_reach),
    Rule("R4.li2018_risk", "2", "MODELS.md §4.1, §5.4; Li 2018, seed [17]",
         "Li 2018 risk (provisional) orders re-IMRT and warns; it never sets a status.",
         li2018_risk, when=local_m0),
    Rule("R4.particles_experimental", "1", "MODELS.md §5.4; seed §5.5, §5.6",
         "Protons and carbon ions at most 'consider'; carbon first of its group after a short "
         "interval.", particles_experimental, when=local_m0),
    Rule("R4.reirradiation_schedules", "2",
         "MODELS.md §2; You 2023, Lancet 401:917; seed §5.2 [87]",
         "Suggested schedules with EQD2, from the shared catalogue.", reirradiation_schedules,
         when=local_m0),
    Rule("R5.ward_class_iii", "2", "MODELS.md §4.2, §5.5; seed §5.4 [19]",
         "Ward class III: SBRT over re-IMRT, or palliation.", ward_class_iii, when=m0),
    Rule("R6.haemorrhage_hazard", "2", "MODELS.md §5.6; seed §5.4 [98]",
         "Foramen lacerum or ICA (present or not assessed): fatal haemorrhage warning on every "
         "re-irradiation modality, none above 'consider'.", haemorrhage_hazard, when=local_m0),
    Rule("R6.tumour_volume", "1", "MODELS.md §4.4; seed §3 [20]; Xiao 2015",
         "GTV above the published volume thresholds stated on re-irradiation options.",
         tumour_volume, when=local_m0),
    Rule("R6.lethal_necrosis", "2", "MODELS.md §4.5, §5.6; Yu 2016, seed [88]",
         "Lethal-necrosis factors warn (count provisional); unknown factors named.",
         lethal_necrosis, when=local_m0),
    Rule("R6.cumulative_gtv_dose", "2", "MODELS.md §2, §4.5, §5.6; seed [88]",
         "Accumulated GTV dose at or above the Yu 2016 threshold flagged.", cumulative_gtv_dose,
         when=m0),
    Rule("R6.performance_status", "1", "MODELS.md §1, §4.2; seed §3 [19]",
         "KPS < 70 (ECOG ≥ 2) or unknown: intensive curative options at most 'consider', with "
         "the warning.", performance_status, when=m0),
    Rule("R6.not_assessed", "1", "issue 9 (unknown is never favourable); MODELS.md §1",
         "Null hazard/eligibility inputs named on each option they could change.", not_assessed,
         when=m0),
    Rule("R7.constrained_resources", "1",
         "MODELS.md §5.7; seed §4.1 [40–43], §4.2 [57], §5.1 [119], §6",
         "Pandemic mode: one admission, short techniques, ≥ 20 fx IMRT.", constrained_resources,
         when=m0),
    Rule("R8.availability", "1", "MODELS.md §5.8",
         "An option the centre lacks is unavailable here — refer.", availability),
)

# The modules whose code decides or words what a rule says: any change to them (logic or text)
# changes RULES_VERSION, not only a change of a rule's id or version.
LOGIC_MODULES: tuple[ModuleType, ...] = (
    context_module, effects_module, eligibility_module, policy_module, schedules_module,
)


def rules_fingerprint(rules: Iterable[Rule], modules: Iterable[ModuleType] = ()) -> str:
    """Digest of every rule's id, version, source, summary and the source code of its predicate
    and function, plus the source of the modules they rely on (this one included by the caller)."""
    digest = hashlib.sha256()
    for rule in rules:
        for part in (rule.id, rule.version, rule.source, rule.summary,
                     inspect.getsource(rule.apply), inspect.getsource(rule.when)):
            digest.update(part.encode())
            digest.update(b"\0")
    for module in modules:
        digest.update(inspect.getsource(module).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


RULES_VERSION = (
    f"rules/{RULES_RELEASE}+"
    f"{rules_fingerprint(RULES, (*LOGIC_MODULES, sys.modules[__name__]))}"
)
