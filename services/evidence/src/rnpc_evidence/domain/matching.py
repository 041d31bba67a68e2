"""Attach the evidence for every local modality to one case.

No seed table row is stratified by the case's features (rT, volume, parapharyngeal depth, ...),
so no study is dropped: what the seed says about who the evidence applies to becomes a note on
the modality, and case-specific figures the seed does report (e.g. ENP 2-year OS by rT) are
quoted with their source. Double quotes in a note mark a passage verbatim from the seed or
MODELS.md (tested); identifiers are in backticks.
"""

from __future__ import annotations

from collections.abc import Iterable

from rnpc_shared.contracts.evidence import EvidenceBase, EvidenceBundle, ModalityBase, Study
from rnpc_shared.contracts.record import (
    LOCAL_MODALITIES,
    Modality,
    Parapharyngeal,
    RecurrenceRecord,
    Site,
    TCategory,
)
from rnpc_shared.contracts.scores import ScoreResult, Scores

from rnpc_evidence.domain.catalogue import evidence_version
from rnpc_evidence.domain.pooling import pooled_summary

_SURGICAL_TOXICITY = (
    'Pooled `late_grade3_toxicity` for surgery is seed Table 1 "Severe Complications, %" (not graded '
    'in the seed) and `grade5_toxicity` is "Treatment-Related Deaths, %".'
)
_PRECISION_RT = (
    'Seed §6: "precision radiation technologies such as SRS, SBRT, or BRT can be used effectively and '
    'safely to treat early stage and low-volume recurrent foci only".'
)
_NOT_STRATIFIED = "The table series are not stratified by rT, so no study is dropped."

GENERAL_NOTES: dict[Modality, tuple[str, ...]] = {
    Modality.enp: (
        'Seed §4.2: "Indications for endoscopic nasopharyngectomy (ENP) using a transnasal approach '
        "include early-stage local recurrences (T1, T2 on TNM classification) located at the "
        'nasopharyngeal roof that invade minimally to the parapharyngeal space." ' + _NOT_STRATIFIED,
        'Seed §4.2 meta-analysis [54] (not a table row): "1-, 2-, and 5-year OS rates following salvage '
        'ENP were 97%, 92%, and 73%".',
        "Post-review phase 3 trial Liu 2021 (ENP vs IMRT) is listed with its design only: its figures "
        "are not confirmed in MODELS.md or the seed.",
        _SURGICAL_TOXICITY,
    ),
    Modality.tors: (
        "No table rows: seed Table 1 includes only endoscopic and maxillary swing nasopharyngectomies.",
        'Seed §4.2: "In the case of the involvement of the base of the skull, the transoral approach may '
        'be combined with the transnasal endoscopic approach in order to achieve a better treatment '
        'outcome [51]".',
        'Seed §4.2: "with the use of TORS nasopharyngectomy, the crucial tactile sensation is disabled, '
        'which may increase the risk of iatrogenic damage to the ICA [40,48,51]".',
    ),
    Modality.msnp: (
        'Seed §4.3: "MSNP may be safely offered to a carefully selected subset of patients with locally '
        'advanced T3-T4 rNPC [58–62]".',
        _SURGICAL_TOXICITY,
    ),
    Modality.neck_dissection: (
        "No table rows: seed Tables 1-3 cover local recurrences.",
        'Seed §4.4 [63]: "neck dissection (ND) is the treatment of choice for patients with isolated '
        'regional failure with the observed 5-year OS in 41% [63]".',
        'Seed §4.4: "as the neck nodes in level I are affected only in 4–5% of the patients with '
        'regionally recurrent NPC, a less extensive RND sparing level I might be considered [64,70,71]".',
    ),
    Modality.reimrt: (
        'Seed §5.2: "treatment mortality rates differ substantially between the Chinese studies '
        '[17,20,75–80,82,83] (Table 2) and studies from the rest of the world [74,84–86] (Table 2)"; '
        "pooled toxicity is also given per subgroup `endemic` / `non_endemic`.",
        'Seed §5.2 meta-analysis [72] (not a table row): "the reported grade 5 toxicity '
        "(treatment-related death) following re-irradiation based on conventionally fractionated IMRT "
        'in patients with rNPC was 33% [72]".',
        "Post-review phase 3 trial You 2023 (hyperfractionated vs standard re-IMRT) is listed with its "
        "design only: its figures are not confirmed in MODELS.md or the seed.",
    ),
    Modality.srs: (
        'Seed §5.3: "The time interval from previous RT, T classification of the recurrence, and tumor '
        'volume are all predictive factors of local control and survival".',
        _PRECISION_RT,
    ),
    Modality.sbrt: (
        'Seed §5.4: "the available evidence on the use of SBRT is strongly biased by a short follow-up".',
        'Seed §5.4: "The use of SBRT is generally recommended over re-IMRT for Ward’s RPA group III '
        'patients (<2 years from previous RT with organ dysfunction) [19]".',
        _PRECISION_RT,
    ),
    Modality.proton: (
        'Seed §5.5: "More data and longer follow-up are required to refine the application of PBT in '
        'patients with rNPC".',
    ),
    Modality.carbon_ion: (
        'Seed §5.6: "Carbon ion radiotherapy offers a promising alternative to patients with a short '
        'time interval from previous radical RT".',
        'Seed §5.6: "more data and long-term follow-up is needed to refine the optimal dose and '
        'fractionation of CIRT in patients with rNPC".',
    ),
    Modality.brachytherapy: (
        'Seed §5.7: "Outcomes of interstitial and intracavitary brachytherapy as single modalities in '
        'the treatment of small T1 and T2 recurrences may be comparable to ENP in terms of LC and OS" '
        "[72]. " + _NOT_STRATIFIED,
        'Seed §5.7: "published data on the use of BRT are very limited".',
        _PRECISION_RT,
    ),
}

# Seed §4.2 meta-analysis [54]: "2-year OS rate in T1, T2, T3, and T4 patients in 100%, 87%, 78%,
# and 38%, respectively [54]".
ENP_2Y_OS_PERCENT_BY_RT = {TCategory.T1: 100, TCategory.T2: 87, TCategory.T3: 78, TCategory.T4: 38}
ENP_2Y_OS_QUOTE = '"2-year OS rate in T1, T2, T3, and T4 patients in 100%, 87%, 78%, and 38%, respectively [54]"'

# Seed §3 [20]: tumour volume threshold for 5-year OS after re-IMRT.
HAN2012_VOLUME_THRESHOLD_CM3 = 38.0
HAN2012_QUOTE = (
    '"Five-year OS rates are poorer in patients with a tumor volume >38 cm3 than in patients with a '
    'tumor volume ≤38 cm3 (30.1% vs. 55.9%, p < 0.001) [20]"'
)

# Which score results bear on which modality's evidence (echoed, never re-interpreted here).
SCORES_BY_MODALITY: dict[Modality, tuple[str, ...]] = {
    Modality.reimrt: ("li2018_prognostic_index", "ward2018_rpa"),
    Modality.srs: ("srs_suitability",),
    Modality.sbrt: ("ward2018_rpa", "srs_suitability"),
    Modality.carbon_ion: ("interval_since_rt",),
}
LI2018_OUTCOMES = (
    'Li 2018 [17] (seed §3): low risk "3-year overall survival (OS) in 69–74%", high risk '
    '"3-year OS in 15–31% only".'
)
_ADVANCED_RT = (TCategory.T3, TCategory.T4)


def _score_note(result: ScoreResult) -> str:
    if not result.computable:
        return f"Score {result.model}: not computable (missing {', '.join(sorted(result.missing_inputs))})."
    unit = f" {result.unit}" if result.unit else ""
    category = f", category {result.category.value}" if result.category is not None else ""
    return f"Score {result.model} = {result.value}{unit}{category} ({result.status.value})."


def _case_notes(modality: Modality, record: RecurrenceRecord, scores: Scores) -> list[str]:
    recurrence = record.recurrence
    extension = recurrence.extension
    rt = recurrence.t_category
    notes: list[str] = []
    if recurrence.site == Site.regional and modality != Modality.neck_dissection:
        notes.append("Case is an isolated regional recurrence: these series treat local recurrences.")
    if modality == Modality.enp:
        if rt in ENP_2Y_OS_PERCENT_BY_RT:
            notes.append(
                f"Case r{rt.value}: seed §4.2 meta-analysis [54] reports 2-year OS "
                f"{ENP_2Y_OS_PERCENT_BY_RT[rt]}% after ENP for r{rt.value} ({ENP_2Y_OS_QUOTE})."
            )
        if rt == TCategory.T3:  # the seed is mixed on rT3
            notes.append(
                "Case rT3: seed §4.2 lists ENP indications as rT1–T2, while seed §6 states "
                '"ENP yields superior results compared to IMRT in T1-T3 recurrent disease"; MODELS.md §5 '
                "rule 3 admits rT3 confined as in Liu 2021."
            )
        if rt == TCategory.T4:
            notes.append("Case rT4 is outside the seed's ENP indications (rT1–T2).")
        if extension is not None and extension.parapharyngeal == Parapharyngeal.deep:
            notes.append("Case has deep parapharyngeal extension; the seed's ENP indication is minimal invasion.")
    if modality == Modality.msnp and extension is not None and extension.ica_encasement:
        notes.append(
            'Case has ICA encasement or exposure; seed §4.3: "Tumors that encircle the ICA are technically '
            'challenging, but they are potentially resectable using an extracranial–intracranial bypass [61]".'
        )
    if modality in (Modality.srs, Modality.sbrt, Modality.brachytherapy) and rt in _ADVANCED_RT:
        notes.append(f"Case r{rt.value}: the seed supports this technique for early-stage, small recurrences.")
    if (
        modality == Modality.sbrt
        and extension is not None
        and extension.fossa_of_rosenmuller
        and extension.foramen_lacerum
    ):
        notes.append(
            "Case involves the fossa of Rosenmüller and the foramen lacerum; seed §5.4 [98]: "
            '"Tumors involving the fossa of Rosenmüller and invading deeply to the foramen lacerum are '
            'the most important predisposing factors of fatal hemorrhage in this clinical setting [98]".'
        )
    if modality == Modality.reimrt:
        if recurrence.gtv_volume_cm3 is not None:
            side = "> 38" if recurrence.gtv_volume_cm3 > HAN2012_VOLUME_THRESHOLD_CM3 else "≤ 38"
            notes.append(f"Case GTV {recurrence.gtv_volume_cm3:g} cm³ ({side} cm³); seed §3: {HAN2012_QUOTE}.")
        planned = record.planned_reirradiation
        if planned is not None and planned.fractions_per_day > 1:
            notes.append(
                "Case plan is hyperfractionated; seed §5.2 [87]: OS with hyperfractionation "
                '"was not significantly different (34.8 vs. 35.5 months, p = 0.603) [87]"; Qiu 2012 [82] '
                "in Table 2 used 1.2 Gy twice a day."
            )
        if "li2018_prognostic_index" in scores.results:
            notes.append(LI2018_OUTCOMES)
    for model_id in SCORES_BY_MODALITY.get(modality, ()):
        if model_id in scores.results:
            notes.append(_score_note(scores.results[model_id]))
    return notes


def evidence_base(studies: Iterable[Study]) -> EvidenceBase:
    """What every case's evidence shares under today's evidence version: per local modality (contract
    order), its studies (sorted by id), pooled figures and general notes. Built once per version."""
    ordered = sorted(studies, key=lambda study: study.study_id)
    pooled = pooled_summary(ordered)
    return EvidenceBase(
        evidence_version=evidence_version(),
        by_modality={
            m: ModalityBase(
                modality=m,
                studies=[study for study in ordered if study.modality == m],
                pooled=[estimate for estimate in pooled if estimate.modality == m],
                notes=list(GENERAL_NOTES[m]),
            )
            for m in LOCAL_MODALITIES
        },
    )


def case_notes(record: RecurrenceRecord, scores: Scores) -> dict[Modality, list[str]]:
    """What is specific to this case, per local modality: the one part of its evidence not in the base."""
    return {m: _case_notes(m, record, scores) for m in LOCAL_MODALITIES}


def match_evidence(record: RecurrenceRecord, scores: Scores, studies: Iterable[Study] | EvidenceBase) -> EvidenceBundle:
    """Every local modality (contract order) with its studies (sorted by id), pooled figures and notes."""
    base = studies if isinstance(studies, EvidenceBase) else evidence_base(studies)
    return base.bundle(case_notes(record, scores))
