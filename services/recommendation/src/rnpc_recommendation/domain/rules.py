"""The decision rules of MODELS.md §5: each is data (id, version, source, scope) + a pure function.

A rule reads the case and returns Effects (status proposals, rank shifts, reasons, warnings,
required workup, schedules); it never sets an option's final status. The engine combines all
effects with the precedence in effects.py. Exactly one pathway rule (R1.m1_systemic,
R2.isolated_regional, R3.enp_within_reach, R4.beyond_enp_reach) fires per case and gives the
preference order; the others modify it.

Every figure below comes from MODELS.md or the seed review and names its source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from rnpc_shared.contracts.recommendation import OptionStatus, RecommendationStatus
from rnpc_shared.contracts.record import LOCAL_MODALITIES, Modality, Parapharyngeal

from rnpc_recommendation.domain.context import CaseContext
from rnpc_recommendation.domain.effects import BACK, DOWN, FIRST, FRONT, Effects
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
RULES_RELEASE = "2026.11.1"

NASOPHARYNGEAL = (M.enp, M.tors, M.msnp, M.srs, M.sbrt, M.proton, M.carbon_ion, M.brachytherapy)
HAEMORRHAGE_HAZARD_OPTIONS = (M.srs, M.sbrt, M.reimrt)  # MODELS.md §5.6
SHORT_TECHNIQUES = (M.srs, M.sbrt, M.brachytherapy)  # MODELS.md §5.7

LI2018_CUT_OFF = 252  # MODELS.md §4.1 (provisional points)
LETHAL_NECROSIS_GTV_DOSE_GY = 145.5  # accumulated GTV prescription dose, physical Gy (seed [88])
CURATIVE_IMRT_MIN_FRACTIONS = 20  # ASTRO-ESTRO 2020 consensus (seed §5.1 [119])
# Surgical stage -> 5-year OS % after resection (You 2015, Eur J Cancer 51:1771; seed [30]).
SURGICAL_STAGE_5Y_OS_PERCENT = {"I": 72.0, "II": 55.1, "III": 21.1, "IV": 10.1}


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
PROTON_TEXT = "Proton therapy: few series, short follow-up; more data needed."
PROTON_SOURCE = "seed §5.5 [102,103]"


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
            "ENP recommended: within Liu 2021 eligibility (rT1–2 or confined rT3, age 18–70, "
            "KPS ≥ 70, non-keratinizing). Phase 3: better OS and fewer severe complications than "
            "IMRT; superior to IMRT for rT1–3 in local control, QoL and complications.",
            source=ENP_SOURCE,
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
            "ENP to consider, not recommended: Liu 2021 criteria unmet or unknown — "
            + "; ".join(unmet)
            + ".",
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


def workup_gate(ctx: CaseContext) -> Effects:
    e = Effects()
    restaging = ctx.record.restaging
    missing = []
    if restaging is None or restaging.mri_on is None:
        missing.append("MRI of the nasopharynx and skull base")
    if restaging is None or restaging.pet_ct_on is None:
        missing.append("whole-body PET/CT to exclude distant metastases")
    if ctx.record.recurrence.m_category is None:
        missing.append("M category (M0/M1) from restaging")
    if not missing:
        return e
    e.case_status = RecommendationStatus.workup_incomplete
    e.required_workup += missing
    e.warnings.append(
        "Restaging incomplete: up to 56% of locally recurrent NPC have synchronous distant "
        "disease (seed §2). The ranking below is provisional until MRI and whole-body PET/CT "
        "are done."
    )
    # The ranking is still shown; only the word "recommended" waits for the restaging.
    e.propose(
        LOCAL_MODALITIES,
        S.consider,
        "Restaging incomplete (" + "; ".join(missing) + "): no local curative option is "
        "recommended before distant disease is excluded.",
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
    e.propose(M.proton, S.consider, PROTON_TEXT, source=PROTON_SOURCE)
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
        e.propose(M.srs, S.not_recommended, limit, source="MODELS.md §4.6; seed §6")
        if ctx.ward_class == "III":
            e.propose(
                M.sbrt,
                S.consider,
                "Kept for Ward class III, where SBRT is preferred over a 7-week re-IMRT course.",
                source="MODELS.md §5.5; seed §5.4 [19]",
            )
            e.warn(
                M.sbrt, "rT3–4 is beyond the small rT1–2 volumes where SBRT is supported (seed §6)."
            )
        else:
            e.propose(M.sbrt, S.not_recommended, limit, source="MODELS.md §4.6; seed §6")
        e.propose(
            M.brachytherapy,
            S.not_recommended,
            "rT3–4: brachytherapy is for small rT1–2 recurrences.",
            source="seed §5.7 [72,113], §6",
        )
        return e

    _srs_sbrt_for_early(e, ctx)
    e.propose(
        M.brachytherapy,
        S.consider,
        "Small rT1–2: interstitial or intracavitary brachytherapy may be comparable to ENP in "
        "local control and OS, with fewer severe complications than re-IMRT.",
        source="seed §5.7 [72,113]",
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
    threshold_cm3 = ctx.scores.parameters.srs_max_volume_cm3
    volume_cm3 = ctx.record.recurrence.gtv_volume_cm3
    volume = f"{volume_cm3:g} cm³" if volume_cm3 is not None else "volume not recorded"
    suitability = ctx.result("srs_suitability")
    source = "MODELS.md §4.6 (Chua 2006, seed [89]; provisional)"
    both = (M.srs, M.sbrt)
    if suitability is None:
        e.propose(both, S.consider, "rT1–2: SRS/SBRT possible for small volumes.", source=source)
        e.warn(
            both,
            f"SRS/SBRT suitability not computable{_why_unknown(ctx, 'srs_suitability')}: "
            "confirm a small volume first.",
        )
    elif suitability.category == "candidate":
        e.propose(
            both,
            S.consider,
            f"Small-volume rT1–2 candidate ({volume}; limit {threshold_cm3:g} cm³): SRS/SBRT "
            "for small volumes.",
            source=source,
            provisional=True,
        )
    else:
        e.propose(
            both,
            S.consider,
            "rT1–2: SRS/SBRT are considered only for small volumes.",
            source=source,
            provisional=True,
        )
        e.shift(
            both, BACK, "Not a small-volume candidate (provisional): moved down.", source=source
        )
        e.warn(
            both,
            f"Not a small-volume candidate ({volume}; limit {threshold_cm3:g} cm³; provisional).",
        )
    e.note(
        M.sbrt,
        "Fractionated SBRT: better 3-year local failure-free rate than SRS (83% vs 51%), "
        "similar OS.",
        source="seed §5.4 [91]",
    )


def surgical_stage(ctx: CaseContext) -> Effects:
    e = Effects()
    result = ctx.result("surgical_stage")
    if result is None or result.value not in SURGICAL_STAGE_5Y_OS_PERCENT:
        return e
    stage = str(result.value)
    text = (
        f"Surgical stage {stage}: 5-year OS {SURGICAL_STAGE_5Y_OS_PERCENT[stage]}% after "
        "resection; ENP is favourable in stages I–II, IMRT in III (You 2015, seed [30])."
    )
    if stage in ("I", "II"):
        e.note(M.enp, text)
    else:
        e.warn((M.enp, M.msnp), text)
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
    # R4.li2018_risk caps this at "consider" unless the Li 2018 risk is known to be low.
    e.propose(
        M.reimrt,
        S.recommended,
        "Beyond ENP reach: re-IMRT, hyperfractionated 65 Gy/54 fx twice daily preferred (fewer "
        "severe late complications, better OS), when the Li 2018 risk is low.",
        source="MODELS.md §5.4; You 2023, Lancet 401:917",
    )
    e.propose(M.proton, S.consider, PROTON_TEXT, source=PROTON_SOURCE)
    _neck(e, ctx)
    _systemic_and_supportive(e, ctx)
    return e


def li2018_risk(ctx: CaseContext) -> Effects:
    e = Effects()
    result = ctx.result("li2018_prognostic_index")
    if result is None or result.category not in ("high_risk", "low_risk"):
        e.propose(
            M.reimrt,
            S.consider,
            f"Li 2018 index not computable{_why_unknown(ctx, 'li2018_prognostic_index')}: "
            "re-IMRT is preferred only when the risk is known to be low.",
        )
        return e
    index = f"index {result.value} vs cut-off {LI2018_CUT_OFF}; provisional"
    if result.category == "low_risk":
        e.note(
            M.reimrt,
            f"Li 2018 low risk ({index}): ideal candidate for curative re-IMRT; 3-year OS "
            "69–74% (seed §3).",
        )
        return e
    e.propose(
        M.reimrt,
        S.consider,
        f"Li 2018 high risk ({index}): re-IMRT only with a warning.",
        provisional=True,
    )
    e.shift(
        M.reimrt,
        BACK,
        "Li 2018 high risk (provisional): moved behind trial, systemic therapy and best "
        "supportive care.",
    )
    e.warn(
        M.reimrt,
        "Li 2018 high risk: 3-year OS 15–31% after salvage re-IMRT (seed §3 [17]); offer a "
        "clinical trial.",
    )
    e.shift(
        M.systemic_therapy,
        FRONT,
        "Li 2018 high risk (provisional): a clinical trial or systemic therapy is discussed first.",
    )
    e.note(
        M.best_supportive_care,
        "Li 2018 high risk (provisional): best supportive care is discussed.",
    )
    return e


def carbon_short_interval(ctx: CaseContext) -> Effects:
    """Carbon ions: a promising alternative after a short interval since RT (MODELS.md §5.4)."""
    e = Effects()
    base = (
        "Carbon-ion therapy: still considered experimental; more data and longer follow-up needed."
    )
    if ctx.short_interval is not True:
        e.propose(M.carbon_ion, S.consider, base, source="seed §5.6 [104–108]")
        return e
    interval = ctx.result("interval_since_rt")
    assert interval is not None  # short_interval is True only when the interval was computed
    months = interval.value
    short = (
        f"Short interval since RT ({months} months ≤ 24): carbon ions offer a promising "
        "alternative."
    )
    # Recommended only where the centre states it has carbon ions, beyond ENP reach, and not in
    # Ward class III (where the shorter SBRT course is preferred, MODELS.md §5.5).
    available = ctx.is_available(M.carbon_ion) is True
    if not ctx.enp.within_reach and available and ctx.ward_class != "III":
        e.propose(M.carbon_ion, S.recommended, short + " Available at this centre.")
    else:
        e.propose(M.carbon_ion, S.consider, short + " " + base)
    e.shift(
        M.carbon_ion,
        FRONT,
        "Short interval since RT: carbon ions moved to the front of their group.",
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
    e.note(
        M.reimrt,
        "Hyperfractionated 65 Gy/54 fx twice daily ≥ 6 h apart preferred over the standard "
        f"60 Gy/27 fx (EQD2 {standard_eqd2_gy:.2f} Gy at α/β {alpha_beta_gy:g} Gy): fewer severe "
        "late complications and better OS.",
    )
    return e


# --- R5 -------------------------------------------------------------------------------------------


def ward_class_iii(ctx: CaseContext) -> Effects:
    e = Effects()
    if ctx.ward_class != "III":
        return e
    e.propose(
        M.reimrt, S.consider, "Ward class III: SBRT is preferred over a 7-week re-IMRT course."
    )
    e.shift(M.reimrt, BACK, "Ward class III: re-IMRT moved behind SBRT and palliation.")
    e.warn(
        M.reimrt,
        "Ward class III: 2-year OS 16.8%, median OS 7.9 months (Ward 2019; MODELS.md §4.2).",
    )
    e.shift(
        M.sbrt,
        FIRST,
        "Ward class III: SBRT generally preferred over re-IMRT (shorter course; no survival "
        "advantage expected).",
        source="seed §5.4 [19,100]",
    )
    e.shift(M.best_supportive_care, FIRST, "Ward class III: palliation is discussed.")
    return e


# --- R6 -------------------------------------------------------------------------------------------


def haemorrhage_hazard(ctx: CaseContext) -> Effects:
    e = Effects()
    ext = ctx.extension
    hazards = []
    # Foramen lacerum invasion alone counts: the FoR origin is typical and the record may omit it.
    if ext.foramen_lacerum is True:
        origin = "from the fossa of Rosenmüller " if ext.fossa_of_rosenmuller is True else ""
        hazards.append(f"invasion {origin}to the foramen lacerum")
    if ext.ica_encasement is True:
        hazards.append("ICA encasement/exposure")
    if not hazards:
        return e
    what = " and ".join(hazards)
    e.propose(
        HAEMORRHAGE_HAZARD_OPTIONS,
        S.consider,
        f"Fatal haemorrhage hazard ({what}): re-irradiation needs tumour-board review of that "
        "risk.",
    )
    e.warn(
        HAEMORRHAGE_HAZARD_OPTIONS,
        f"Risk of fatal haemorrhage: {what}. Fossa of Rosenmüller tumours invading the foramen "
        "lacerum are the most important predisposing factor (seed §5.4 [98]).",
    )
    return e


def lethal_necrosis(ctx: CaseContext) -> Effects:
    e = Effects()
    result = ctx.result("lethal_necrosis_factors")
    if result is None:
        e.warn(
            M.reimrt,
            "Lethal nasopharyngeal necrosis factors not computable"
            f"{_why_unknown(ctx, 'lethal_necrosis_factors')} (Yu 2016, seed [88]).",
        )
        return e
    present = [str(name) for name in result.details.get("present", [])]
    if present:
        e.warn(
            M.reimrt,
            f"Lethal nasopharyngeal necrosis risk factors present ({len(present)} of 4; count "
            "provisional): " + ", ".join(present) + ". 31 of 204 at-risk patients (15.2%) died "
            "of necrosis (Yu 2016, seed [88]).",
        )
    return e


def cumulative_gtv_dose(ctx: CaseContext) -> Effects:
    e = Effects()
    planned = ctx.result("cumulative_gtv_dose")
    if planned is not None and planned.category == "ge_145_5_gy":
        assert isinstance(planned.value, int | float)  # this category comes with the dose in Gy
        text = (
            f"The planned schedule accumulates {float(planned.value):g} Gy to the GTV (prior + "
            f"planned), ≥ {LETHAL_NECROSIS_GTV_DOSE_GY} Gy: a lethal-necrosis risk factor "
            "(Yu 2016, seed [88])."
        )
        e.warn(M.reimrt, text)
        e.warnings.append(text)
    if ctx.has_local_disease:
        prior_gy = ctx.record.prior_treatment.rt_total_dose_gy
        suggested_total_gy = prior_gy + REIMRT_HYPERFRACTIONATED.total_dose_gy
        if suggested_total_gy >= LETHAL_NECROSIS_GTV_DOSE_GY:
            e.warn(
                M.reimrt,
                f"The suggested 65 Gy schedule would accumulate {suggested_total_gy:g} Gy to the "
                f"GTV (prior {prior_gy:g} Gy), ≥ {LETHAL_NECROSIS_GTV_DOSE_GY} Gy: a "
                "lethal-necrosis risk factor (Yu 2016, seed [88]).",
            )
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
    Rule("R1.workup_gate", "1", "MODELS.md §5.1; seed §2",
         "MRI and whole-body PET/CT before any curative decision.", workup_gate),
    Rule("R1.m1_systemic", "1", "MODELS.md §5.1",
         "M1: systemic therapy and tumour board; no local curative option.", m1_systemic,
         when=m1),
    Rule("R2.isolated_regional", "1", "MODELS.md §5.2; seed §4.4 [63]",
         "Isolated regional recurrence: neck dissection.", isolated_regional,
         when=_pathway_regional),
    Rule("R3.enp_within_reach", "1", "MODELS.md §5.3; Liu 2021, Lancet Oncol 22:381",
         "Within ENP reach: ENP, with radiation alternatives.", enp_within_reach,
         when=_pathway_within_reach),
    Rule("R3.small_volume_techniques", "1", "MODELS.md §4.6, §5.3; seed §5.3–5.4, §5.7, §6",
         "SRS/SBRT and brachytherapy for small rT1–2 only.", small_volume_techniques,
         when=local_m0),
    Rule("R3.surgical_stage", "1", "MODELS.md §4.3; You 2015, seed [30]",
         "Surgical stage informs ENP (lookup only).", surgical_stage, when=local_m0),
    Rule("R4.beyond_enp_reach", "1", "MODELS.md §5.4; seed §4.3 [58–62]",
         "Beyond ENP reach: MSNP if resectable, else re-IMRT.", beyond_enp_reach,
         when=_pathway_beyond_reach),
    Rule("R4.li2018_risk", "1", "MODELS.md §4.1, §5.4; Li 2018, seed [17]",
         "Li 2018 risk gates re-IMRT (provisional).", li2018_risk, when=local_m0),
    Rule("R4.carbon_short_interval", "1", "MODELS.md §5.4; seed §5.6",
         "Short interval since RT: carbon ions where available.", carbon_short_interval,
         when=local_m0),
    Rule("R4.reirradiation_schedules", "1", "MODELS.md §2; You 2023, Lancet 401:917",
         "Suggested schedules with EQD2.", reirradiation_schedules, when=local_m0),
    Rule("R5.ward_class_iii", "1", "MODELS.md §4.2, §5.5; seed §5.4 [19]",
         "Ward class III: SBRT over re-IMRT, or palliation.", ward_class_iii, when=m0),
    Rule("R6.haemorrhage_hazard", "1", "MODELS.md §5.6; seed §5.4 [98]",
         "Foramen lacerum or ICA: fatal haemorrhage warning.", haemorrhage_hazard, when=local_m0),
    Rule("R6.lethal_necrosis", "1", "MODELS.md §4.5, §5.6; Yu 2016, seed [88]",
         "Lethal-necrosis factors warn (count provisional).", lethal_necrosis, when=local_m0),
    Rule("R6.cumulative_gtv_dose", "1", "MODELS.md §2, §4.5, §5.6; seed [88]",
         "Accumulated GTV dose ≥ 145.5 Gy flagged.", cumulative_gtv_dose, when=m0),
    Rule("R7.constrained_resources", "1",
         "MODELS.md §5.7; seed §4.1 [40–43], §4.2 [57], §5.1 [119], §6",
         "Pandemic mode: one admission, short techniques, ≥ 20 fx IMRT.", constrained_resources,
         when=m0),
    Rule("R8.availability", "1", "MODELS.md §5.8",
         "An option the centre lacks is unavailable here — refer.", availability),
)


def _rules_fingerprint(rules: tuple[Rule, ...]) -> str:
    """Any change of a rule id or version changes RULES_VERSION, so audits see it."""
    listing = "\n".join(f"{rule.id}@{rule.version}" for rule in rules)
    return hashlib.sha256(listing.encode()).hexdigest()[:8]


RULES_VERSION = f"rules/{RULES_RELEASE}+{_rules_fingerprint(RULES)}"
