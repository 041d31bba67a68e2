"""ENP eligibility per Liu 2021 (Lancet Oncol 2021;22:381), mapped conservatively onto the record.

Liu 2021 admitted rT1–2, and rT3 confined to the nasopharyngeal cavity, posterior naris or nasal
septum, superficial parapharyngeal space or the base wall of the sphenoid sinus; age 18–70;
KPS ≥ 70; non-keratinizing histology (MODELS.md §5.3). The record cannot say "base wall", so a
recorded sphenoid involvement counts as within reach with a warning to confirm it on MRI, and
any other bony or sinus involvement is outside the trial's reach or left to confirm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rnpc_shared.contracts.record import Parapharyngeal, TCategory

if TYPE_CHECKING:
    from rnpc_recommendation.domain.context import CaseContext

KPS_FIT_MIN = 70  # Liu 2021 eligibility; Ward 2018 factor KPS < 70 (MODELS.md §4.2, §5.3)
LIU2021_AGE_MIN_YEARS = 18
LIU2021_AGE_MAX_YEARS = 70

# Flags that put the tumour beyond endoscopic reach whatever the trial (the brief's hard list:
# deep parapharyngeal, intracranial, cranial nerves, ICA encasement, and rT4 structures).
_BEYOND_REACH_FLAGS: tuple[tuple[str, str], ...] = (
    ("intracranial", "intracranial/dural extension"),
    ("cranial_nerves", "cranial nerve involvement"),
    ("ica_encasement", "ICA encasement or exposure"),
    ("hypopharynx", "hypopharyngeal extension"),
    ("orbit", "orbital extension"),
    ("parotid", "parotid extension"),
    ("beyond_lateral_pterygoid", "soft tissue beyond the lateral pterygoid"),
    ("cervical_vertebra", "cervical vertebra involvement"),
)
# Flags outside Liu 2021's listed regions but not by themselves beyond an endoscope (seed §4.2:
# 3-D navigation eases skull-base resection): ENP becomes a surgeon's judgement, not the trial's.
_OUTSIDE_LIU_FLAGS: tuple[tuple[str, str], ...] = (
    ("pterygoid_structures", "pterygoid structures"),
    ("adjacent_soft_tissue", "pterygoid or prevertebral muscles"),
    ("foramen_lacerum", "foramen lacerum"),
    ("oropharynx", "oropharyngeal extension"),
)
_T3_CONFINEMENT_FLAGS_TO_KNOW: tuple[tuple[str, str], ...] = (
    ("pterygoid_structures", "pterygoid structures"),
    ("intracranial", "intracranial/dural extension"),
    ("cranial_nerves", "cranial nerves"),
)
_T3_FEATURES = (
    "skull_base_bone",
    "cervical_vertebra",
    "pterygoid_structures",
    "paranasal_sinuses",
    "sphenoid_sinus",
)
_BONE_OR_SINUS: tuple[tuple[str, str], ...] = (
    ("skull_base_bone", "bony skull base"),
    ("paranasal_sinuses", "paranasal sinuses"),
)


@dataclass(frozen=True)
class EnpAssessment:
    beyond_reach: tuple[str, ...]  # exact findings that exclude ENP
    outside_anatomy: tuple[str, ...]  # anatomical extension outside Liu 2021's confinement
    outside_patient: tuple[str, ...]  # age / KPS / histology outside Liu 2021
    to_confirm: tuple[str, ...]  # criteria the record leaves unknown
    warnings: tuple[str, ...]
    kps_note: str | None
    rt3_or_more: bool  # entered/derived rT3–4 or a T3 structure flagged

    @property
    def within_reach(self) -> bool:
        """Not beyond endoscopic reach, and an rT3 not shown to be outside Liu 2021's confinement.

        An rT1–2 extending outside Liu 2021's listed regions stays within reach (ENP becomes
        "consider"): in early local recurrence salvage surgery should always be considered
        (seed §6); only rT3–4 beyond reach goes to MSNP / re-IMRT (MODELS.md §5.4).
        """
        return not self.beyond_reach and not (self.outside_anatomy and self.rt3_or_more)

    @property
    def eligible(self) -> bool:
        return not (
            self.beyond_reach or self.outside_anatomy or self.outside_patient or self.to_confirm
        )


def assess_enp(ctx: CaseContext) -> EnpAssessment:
    ext = ctx.extension
    beyond: list[str] = []
    outside_anatomy: list[str] = []
    outside_patient: list[str] = []
    to_confirm: list[str] = []
    warnings: list[str] = []

    if ctx.t_category == TCategory.T4:
        beyond.append("rT4 (Liu 2021 admitted rT1–3 only)")
    if ext.parapharyngeal == Parapharyngeal.deep:
        beyond.append("deep parapharyngeal extension (Liu 2021: superficial space only)")
    beyond += [label for name, label in _BEYOND_REACH_FLAGS if getattr(ext, name) is True]
    if ctx.resectable is False:
        beyond.append("surgeon's assessment: not resectable")
    outside_anatomy += [label for name, label in _OUTSIDE_LIU_FLAGS if getattr(ext, name) is True]

    if ext.ica_encasement is None:
        to_confirm.append("ICA encasement/exposure (not assessed)")
    if ext.parapharyngeal is None and ctx.t_category != TCategory.T1:
        to_confirm.append("parapharyngeal depth (not assessed)")
    if ctx.resectable is None:
        to_confirm.append("surgeon's resectability assessment")
    if ext.nasal_cavity is True:
        warnings.append(
            "Nasal cavity extension: Liu 2021 admitted the posterior naris or nasal septum only; "
            "confirm the extent on MRI."
        )

    rt3_or_more = ctx.t3_or_t4 or any(getattr(ext, name) is True for name in _T3_FEATURES)
    if rt3_or_more:
        _assess_t3_confinement(ctx, outside_anatomy, to_confirm, warnings)

    age_years = ctx.record.patient.age_years
    if not LIU2021_AGE_MIN_YEARS <= age_years <= LIU2021_AGE_MAX_YEARS:
        outside_patient.append(f"age {age_years} years (Liu 2021: 18–70)")
    kps = ctx.kps
    if kps is None:
        to_confirm.append("KPS or ECOG (Liu 2021: KPS ≥ 70)")
    elif kps.value < KPS_FIT_MIN:
        outside_patient.append(f"{kps.describe()} (Liu 2021: KPS ≥ 70)")
    if ctx.keratinizing is True:
        outside_patient.append("keratinizing histology (Liu 2021: non-keratinizing only)")
    elif ctx.keratinizing is None:
        to_confirm.append("histology: keratinizing or not (Liu 2021: non-keratinizing only)")

    return EnpAssessment(
        beyond_reach=tuple(beyond),
        outside_anatomy=tuple(outside_anatomy),
        outside_patient=tuple(outside_patient),
        to_confirm=tuple(to_confirm),
        warnings=tuple(warnings),
        kps_note=kps.describe() if kps is not None and kps.from_ecog is not None else None,
        rt3_or_more=rt3_or_more,
    )


def _assess_t3_confinement(
    ctx: CaseContext, outside_anatomy: list[str], to_confirm: list[str], warnings: list[str]
) -> None:
    """rT3 is within reach only when its bony/sinus involvement is the sphenoid base wall."""
    ext = ctx.extension
    sphenoid = ext.sphenoid_sinus
    if sphenoid is True:
        warnings.append(
            "Sphenoid involvement: Liu 2021 admitted the base wall of the sphenoid sinus only; "
            "confirm on MRI that the tumour does not extend beyond it."
        )
    for name, label in _BONE_OR_SINUS:
        if getattr(ext, name) is True:
            if sphenoid is True:
                to_confirm.append(f"{label} involvement limited to the sphenoid base wall")
            else:
                outside_anatomy.append(f"{label} beyond the sphenoid base wall")
    if sphenoid is None:
        to_confirm.append("sphenoid base wall as the only bony/sinus site (not recorded)")
    elif sphenoid is False and not any(
        getattr(ext, name) is True
        for name in ("skull_base_bone", "paranasal_sinuses", "pterygoid_structures")
    ):
        to_confirm.append("the structure that makes the recurrence rT3 (none recorded)")
    to_confirm += [
        f"{label} (not assessed)"
        for name, label in _T3_CONFINEMENT_FLAGS_TO_KNOW
        if getattr(ext, name) is None
    ]


def exact_curative_fit(ctx: CaseContext, enp: EnpAssessment) -> str | None:
    """Why a local curative option fits on exact criteria alone, or None.

    Systemic therapy and best supportive care are for M1 or when no local curative option fits
    (MODELS.md §5); only exact facts may exclude them, so no provisional model is read here.
    """
    kps = ctx.kps
    if ctx.is_m1 or ctx.ward_class_iii or kps is None or kps.value < KPS_FIT_MIN:
        return None
    if ctx.resectable is not True:
        return None
    if ctx.is_isolated_regional:
        if ctx.record.recurrence.n_category == "N0":
            return None  # contradictory record: nothing fits until the nodal disease is confirmed
        return (
            "a resectable isolated regional recurrence: neck dissection is the treatment of "
            "choice (seed §4.4 [63])"
        )
    if enp.eligible:
        return "ENP fits every Liu 2021 criterion"
    if enp.within_reach and ctx.t_category in (TCategory.T1, TCategory.T2) and not ctx.t3_or_t4:
        return (
            "a resectable early (rT1–2) local recurrence: salvage surgery should always be "
            "considered (seed §6)"
        )
    return None
