"""The engine: runs every rule over the case and combines their effects into a Recommendation.

Pure and deterministic: no I/O, no clock (`issued_at` is a parameter); options, reasons and
warnings are ordered by rule order and a fixed tie-break, so equal inputs give byte-identical
output apart from `issued_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rnpc_shared.contracts.evidence import EvidenceBundle
from rnpc_shared.contracts.recommendation import (
    DependencyRole,
    ModelDependency,
    Option,
    OptionEvidence,
    OptionStatus,
    Reason,
    Recommendation,
    RecommendationStatus,
    Versions,
)
from rnpc_shared.contracts.record import Modality, RecurrenceRecord, canonical_hash, model_hash
from rnpc_shared.contracts.scores import ModelStatus, Scores

from rnpc_recommendation.domain.basis import build_basis
from rnpc_recommendation.domain.context import CaseContext
from rnpc_recommendation.domain.effects import (
    CASE_PRECEDENCE,
    CLINICAL_PRECEDENCE,
    PLACE,
    Effects,
    Note,
    OptionWarning,
)
from rnpc_recommendation.domain.policy import Policy
from rnpc_recommendation.domain.rules import RULES, RULES_VERSION, Rule

MODALITY_ORDER: tuple[Modality, ...] = tuple(Modality)  # the contract's order: the final tie-break
# Ranking: by clinical status group (recommended, consider, then the excluded ones); within a
# group, options the centre offers before referrals, then the rules' priority, then the
# contract's order. A recommended option the centre lacks therefore still ranks first: the
# referral for the best option is never hidden behind a weaker local one.
STATUS_GROUP: dict[OptionStatus, int] = {
    OptionStatus.recommended: 0,
    OptionStatus.consider: 1,
    OptionStatus.not_recommended: 2,
    OptionStatus.contraindicated: 3,
}
OFFERED = frozenset({OptionStatus.recommended, OptionStatus.consider})

Applied = list[tuple[Rule, Effects]]


def recommend(
    record: RecurrenceRecord,
    scores: Scores,
    evidence: EvidenceBundle,
    issued_at: datetime,
    policy: Policy | None = None,
    *,
    record_hash: str | None = None,
    scores_hash: str | None = None,
) -> Recommendation:
    """The recommendation for one record version (MODELS.md §5); `issued_at`'s date is the
    decision date the restaging is checked against. `record_hash` / `scores_hash`: the record's
    content hash and the scores' hash when the caller has them (the pipeline's events carry
    them); computed here otherwise."""
    policy = policy or Policy()
    ctx = CaseContext(record, scores, evidence, decision_on=issued_at.date(), policy=policy)
    applied: Applied = [(rule, rule.effects(ctx)) for rule in RULES]
    _refuse_provisional_status(applied, ctx)
    order = _preference_order(applied)
    drafts = [_draft(modality, applied, order, ctx) for modality in MODALITY_ORDER]
    drafts.sort(key=lambda d: d[0])
    options = [
        option.model_copy(update={"rank": rank}) for rank, (_, option) in enumerate(drafts, start=1)
    ]
    case_statuses = {e.case_status for _, e in applied if e.case_status is not None}
    return Recommendation(
        recurrence_id=record.recurrence_id,
        version=record.version,
        status=next(
            (s for s in CASE_PRECEDENCE if s in case_statuses), RecommendationStatus.complete
        ),
        options=options,
        required_workup=_unique(item for _, e in applied for item in e.required_workup),
        warnings=_unique(item for _, e in applied for item in e.warnings),
        missing_assessments=_unique(item for _, e in applied for item in e.missing_assessments),
        policies=policy.settings(),
        basis=build_basis(ctx, [e for _, e in applied], options),
        versions=Versions(
            rules=RULES_VERSION, models=scores.models_version, evidence=evidence.evidence_version
        ),
        input_hash=input_hash(
            record_hash or record.content_hash(),
            scores_hash or model_hash(scores),
            evidence.evidence_version,
        ),
        issued_at=issued_at,
    )


def input_hash(record_hash: str, scores_hash: str, evidence_version: str) -> str:
    """SHA-256 naming what the recommendation was computed from: the record's content hash, the
    scores' hash (SHA-256 of their canonical JSON) and the evidence version.

    Each names its content, so the inputs enter by their ids, not by the ~20 KB they name; the
    evidence is a function of the record, the scores and the evidence version.
    """
    return canonical_hash({"record": record_hash, "scores": scores_hash, "evidence_version": evidence_version})


def final_status(clinical: OptionStatus, centre_lacks_it: bool) -> OptionStatus:
    """Availability over the clinical status.

    Precedence: contraindicated > not_recommended > unavailable > consider > recommended.
    An option the centre lacks but that would be offered becomes "unavailable" (refer); one that
    is excluded clinically keeps its exclusion, since a referral for it would mislead. Either
    way the clinical reasons and warnings stay on the option and the availability is a reason.
    """
    return OptionStatus.unavailable if centre_lacks_it and clinical in OFFERED else clinical


def clinical_status(proposals: list[OptionStatus]) -> OptionStatus:
    """The most cautious proposal wins (effects.CLINICAL_PRECEDENCE)."""
    return next(status for status in CLINICAL_PRECEDENCE if status in proposals)


def _refuse_provisional_status(applied: Applied, ctx: CaseContext) -> None:
    """A provisional model may order or warn, never set a status (MODELS.md; issue 9)."""
    for rule, e in applied:
        for proposal in e.proposals:
            provisional = [
                m for m in proposal.models if ctx.model_status(m) == ModelStatus.provisional
            ]
            if provisional:
                raise RuntimeError(
                    f"{rule.id}: a status proposal for {proposal.modality} rests on provisional "
                    f"model(s) {provisional}"
                )


def _dependencies(
    modality: Modality, applied: Applied, clinical: OptionStatus, ctx: CaseContext
) -> list[ModelDependency]:
    """Models behind the option: those of the decisive proposals (role status), then those that
    moved it (ordering) or only warned/explained (warning); each model listed once, first role."""
    found: dict[str, DependencyRole] = {}
    for _, e in applied:
        for p in e.proposals:
            if p.modality == modality and p.status == clinical:
                for model in p.models:
                    found.setdefault(model, DependencyRole.status)
    for _, e in applied:
        for s in e.shifts:
            if s.modality == modality:
                for model in s.models:
                    found.setdefault(model, DependencyRole.ordering)
    for _, e in applied:
        explained: list[Note | OptionWarning] = [*e.notes, *e.option_warnings]
        for item in explained:
            if item.modality == modality:
                for model in item.models:
                    found.setdefault(model, DependencyRole.warning)
    return [
        ModelDependency(model=model, status=status, role=role)
        for model, role in found.items()
        if (status := ctx.model_status(model)) is not None  # a model scoring did not report
    ]


def _preference_order(applied: Applied) -> tuple[Modality, ...]:
    orders = [(rule.id, e.preference_order) for rule, e in applied if e.preference_order]
    if len(orders) != 1:
        fired = [rule_id for rule_id, _ in orders]
        raise RuntimeError(f"exactly one pathway rule must fire, got {fired}")
    rule_id, order = orders[0]
    if sorted(order) != sorted(MODALITY_ORDER):
        raise RuntimeError(f"{rule_id}: the preference order must list every modality once")
    return order


def _draft(
    modality: Modality, applied: Applied, order: tuple[Modality, ...], ctx: CaseContext
) -> tuple[tuple[int, bool, int, int], Option]:
    """One option (rank still 1) with its sort key (see STATUS_GROUP)."""
    proposed: list[OptionStatus] = []
    reasons: list[Reason] = []
    warnings: list[str] = []
    priority = order.index(modality) * PLACE
    schedule = None
    lacked_by: Rule | None = None  # the availability rule, when the centre lacks this option
    for rule, e in applied:
        for p in e.proposals:
            if p.modality == modality:
                proposed.append(p.status)
                reasons.append(Reason(rule=rule.id, text=p.text, source=p.source or rule.source))
        for n in e.notes:
            if n.modality == modality:
                reasons.append(Reason(rule=rule.id, text=n.text, source=n.source or rule.source))
        for s in e.shifts:
            if s.modality == modality:
                priority += s.points
                reasons.append(Reason(rule=rule.id, text=s.text, source=s.source or rule.source))
        warnings += [w.text for w in e.option_warnings if w.modality == modality]
        schedule = e.schedules.get(modality, schedule)
        if modality in e.unavailable:
            lacked_by = rule
    if not proposed:
        raise RuntimeError(f"no rule proposed a status for {modality}")
    clinical = clinical_status(proposed)
    lacked = lacked_by is not None
    if lacked_by is not None:
        reasons.append(_availability_reason(lacked_by, clinical))
    option = Option(
        modality=modality,
        status=final_status(clinical, centre_lacks_it=lacked),
        rank=1,
        reasons=reasons,
        warnings=_unique(warnings),
        evidence=_evidence(ctx.evidence, modality),
        # A schedule only where the option is offered: no dose suggestion for an excluded option.
        schedule=(
            schedule.to_schedule(ctx.alpha_beta_tumour_gy, ctx.alpha_beta_late_gy)
            if schedule is not None and clinical in OFFERED
            else None
        ),
        depends_on=_dependencies(modality, applied, clinical, ctx),
    )
    return (STATUS_GROUP[clinical], lacked, priority, MODALITY_ORDER.index(modality)), option


def _availability_reason(rule: Rule, clinical: OptionStatus) -> Reason:
    if clinical in OFFERED:
        text = f"Unavailable here — refer to a centre that offers it (clinical status: {clinical})."
    else:
        text = (
            "Not offered at this centre; no referral, as it is not indicated "
            f"(clinical status: {clinical})."
        )
    return Reason(rule=rule.id, text=text, source=rule.source)


def _evidence(evidence: EvidenceBundle, modality: Modality) -> OptionEvidence:
    matched = evidence.by_modality.get(modality)
    if matched is None:
        return OptionEvidence()
    return OptionEvidence(
        study_ids=[study.study_id for study in matched.studies], pooled=list(matched.pooled)
    )


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
