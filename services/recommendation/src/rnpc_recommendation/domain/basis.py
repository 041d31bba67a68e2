"""The basis of a recommendation: what it read and cites, compact, so each claim can be checked
without another call (FDA non-device CDS criterion 4). Only studies the offered options cite are
carried, not the whole evidence bundle."""

from __future__ import annotations

from collections.abc import Iterable

from rnpc_shared.contracts.recommendation import (
    Basis,
    CitedStudy,
    EvidenceNote,
    Option,
    OptionStatus,
    ProvisionalFlag,
    ScoreUsed,
)
from rnpc_shared.contracts.record import Modality
from rnpc_shared.contracts.scores import ModelStatus

from rnpc_recommendation.domain.context import CaseContext
from rnpc_recommendation.domain.effects import Effects, Note, OptionWarning, Proposal, Shift

CITED_FOR = frozenset({OptionStatus.recommended, OptionStatus.consider, OptionStatus.unavailable})
PROVISIONAL_EFFECT = (
    "Provisional model: it may order options of the same status or add warnings; it decided no "
    "status (MODELS.md)."
)


def _touched(effects: Iterable[Effects]) -> dict[str, list[Modality]]:
    """Model id → the options whose reasons, warnings, order or status it touched."""
    touched: dict[str, list[Modality]] = {}
    for e in effects:
        items: list[Proposal | Note | Shift | OptionWarning] = [
            *e.proposals, *e.notes, *e.shifts, *e.option_warnings
        ]
        for item in items:
            for model in item.models:
                options = touched.setdefault(model, [])
                if item.modality not in options:
                    options.append(item.modality)
    return touched


def build_basis(ctx: CaseContext, effects: list[Effects], options: list[Option]) -> Basis:
    touched = _touched(effects)
    used = ctx.reads | set(touched)
    scores = [
        ScoreUsed(
            model=result.model, version=result.version, status=result.status,
            computable=result.computable, value=result.value, unit=result.unit,
            category=result.category, thresholds=result.thresholds,
            missing_inputs=result.missing_inputs, citation=result.citation,
        )
        for model_id, result in ctx.scores.results.items()
        if model_id in used
    ]
    cited = list(dict.fromkeys(
        study_id for option in options if option.status in CITED_FOR
        for study_id in option.evidence.study_ids
    ))
    by_id = {
        study.study_id: study
        for modality_evidence in ctx.evidence.by_modality.values()
        for study in modality_evidence.studies
    }
    studies = [
        CitedStudy(
            study_id=study.study_id, citation=study.citation, n=study.n, modality=study.modality,
            outcomes=study.outcomes, late_grade3_toxicity_percent=study.late_grade3_toxicity_percent,
            grade5_toxicity_percent=study.grade5_toxicity_percent,
        )
        for study_id in cited
        if (study := by_id.get(study_id)) is not None
    ]
    notes = [
        EvidenceNote(modality=modality, text=text)
        for modality, modality_evidence in ctx.evidence.by_modality.items()
        for text in modality_evidence.case_notes
    ]
    flags = [
        ProvisionalFlag(
            model=model_id, value=result.value, category=result.category,
            options=touched.get(model_id, []), effect=PROVISIONAL_EFFECT,
        )
        for model_id, result in ctx.scores.results.items()
        if model_id in used and result.status == ModelStatus.provisional
    ]
    return Basis(scores=scores, studies=studies, evidence_notes=notes, provisional_flags=flags)
