"""Unit tests of the engine's pieces: EQD2 and schedules, precedence, rule metadata, evidence."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rnpc_shared.contracts.recommendation import OptionStatus
from rnpc_shared.contracts.record import Modality
from rnpc_shared.contracts.scores import ScoringParameters

from rnpc_recommendation.domain import RULES, RULES_VERSION, eqd2_gy, recommend
import dataclasses

from rnpc_recommendation.domain import rules as rules_module
from rnpc_recommendation.domain.context import CaseContext
from rnpc_recommendation.domain.effects import Effects
from rnpc_recommendation.domain.engine import (
    _refuse_provisional_status,
    clinical_status,
    final_status,
)
from rnpc_recommendation.domain.rules import LOGIC_MODULES, rules_fingerprint

ISSUED_AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
S = OptionStatus


def test_eqd2_matches_the_formula() -> None:
    # MODELS.md §2: EQD2 = D·(d + α/β)/(2 + α/β).
    assert eqd2_gy(70.0, 35, 10.0) == pytest.approx(70.0)  # 2 Gy fractions are their own EQD2
    assert eqd2_gy(65.0, 54, 10.0) == pytest.approx(65 * (65 / 54 + 10) / 12)  # You 2023 schedule
    assert eqd2_gy(60.0, 27, 3.0) == pytest.approx(60 * (60 / 27 + 3) / 5)


@given(
    dose=st.floats(1, 100), extra=st.floats(0.1, 50), fractions=st.integers(1, 60),
    ab=st.floats(0.5, 20),
)
def test_eqd2_increases_with_dose(dose: float, extra: float, fractions: int, ab: float) -> None:
    assert eqd2_gy(dose + extra, fractions, ab) > eqd2_gy(dose, fractions, ab)


def test_reimrt_schedule_uses_the_echoed_alpha_beta(kit: SimpleNamespace) -> None:
    record = kit.build_record(
        {"recurrence.t_category": "T2", "recurrence.extension.parapharyngeal": "superficial"}
    )
    scores = kit.build_scores(record)
    default = recommend(record, scores, kit.build_evidence(), ISSUED_AT)
    schedule = next(o for o in default.options if o.modality == Modality.reimrt).schedule
    assert (schedule.total_dose_gy, schedule.fractions, schedule.fractions_per_day) == (65.0, 54, 2)
    assert schedule.alpha_beta_gy == 10.0 and schedule.eqd2_gy == round(eqd2_gy(65.0, 54, 10.0), 2)
    assert "You 2023" in schedule.source

    ab8 = ScoringParameters(alpha_beta_tumour_gy=8.0)
    scores_ab8 = scores.model_copy(update={"parameters": ab8})
    custom = recommend(record, scores_ab8, kit.build_evidence(), ISSUED_AT)
    schedule = next(o for o in custom.options if o.modality == Modality.reimrt).schedule
    assert schedule.alpha_beta_gy == 8.0 and schedule.eqd2_gy == round(eqd2_gy(65.0, 54, 8.0), 2)


def test_schedules_only_from_models_md(kit: SimpleNamespace) -> None:
    record = kit.build_record()
    rec = recommend(record, kit.build_scores(record), kit.build_evidence(), ISSUED_AT)
    schedules = {
        o.modality: (o.schedule.total_dose_gy, o.schedule.fractions)
        for o in rec.options
        if o.schedule
    }
    assert schedules == {
        Modality.reimrt: (65.0, 54),  # You 2023 (MODELS.md §2)
        Modality.srs: (12.5, 1),  # seed Table 3
        Modality.sbrt: (24.0, 6),  # seed §5.4 [92]
        Modality.brachytherapy: (24.0, 3),  # seed [113]
    }


@pytest.mark.parametrize(
    ("proposals", "expected"),
    [
        ([S.recommended, S.consider], S.consider),
        ([S.recommended, S.not_recommended, S.consider], S.not_recommended),
        ([S.contraindicated, S.recommended, S.not_recommended], S.contraindicated),
        ([S.recommended], S.recommended),
    ],
)
def test_the_most_cautious_proposal_wins(
    proposals: list[OptionStatus], expected: OptionStatus
) -> None:
    assert clinical_status(proposals) == expected


@pytest.mark.parametrize(
    ("clinical", "lacks", "expected"),
    [
        (S.recommended, True, S.unavailable),
        (S.consider, True, S.unavailable),
        (S.not_recommended, True, S.not_recommended),  # unavailable never hides an exclusion
        (S.contraindicated, True, S.contraindicated),
        (S.recommended, False, S.recommended),
    ],
)
def test_availability_precedence(
    clinical: OptionStatus, lacks: bool, expected: OptionStatus
) -> None:
    assert final_status(clinical, centre_lacks_it=lacks) == expected


@pytest.mark.parametrize("status", [S.recommended, S.consider, S.not_recommended])
def test_a_status_resting_on_a_provisional_model_is_refused(
    kit: SimpleNamespace, status: OptionStatus
) -> None:
    """Issue 9 item 6: a provisional model alone can never set any status (engine guard)."""
    record = kit.build_record()
    ctx = CaseContext(record, kit.build_scores(record), kit.build_evidence(), ISSUED_AT.date())
    e = Effects()
    e.propose(Modality.reimrt, status, "Li 2018 high risk", models=("li2018_prognostic_index",))
    with pytest.raises(RuntimeError, match="provisional"):
        _refuse_provisional_status([(RULES[0], e)], ctx)
    exact = Effects()
    exact.propose(Modality.reimrt, status, "Ward class III", models=("ward2018_rpa",))
    _refuse_provisional_status([(RULES[0], exact)], ctx)  # an exact model may


def test_rules_version_fingerprints_logic_and_text() -> None:
    """Issue 9 item 9: any change of a rule's text or logic changes RULES_VERSION."""
    modules = (*LOGIC_MODULES, rules_module)
    assert RULES_VERSION.endswith(rules_fingerprint(RULES, modules))
    first = RULES[0]
    reworded = dataclasses.replace(first, summary=first.summary + " (reworded)")
    assert rules_fingerprint((reworded, *RULES[1:]), modules) != rules_fingerprint(RULES, modules)

    def texted(ctx: CaseContext) -> Effects:
        e = Effects()
        e.warnings.append("one text")
        return e

    def retexted(ctx: CaseContext) -> Effects:
        e = Effects()
        e.warnings.append("another text")
        return e

    a = dataclasses.replace(first, apply=texted)
    b = dataclasses.replace(first, apply=retexted)
    assert rules_fingerprint((a,)) != rules_fingerprint((b,))  # same id and version, new text
    assert rules_fingerprint((a,)) == rules_fingerprint((dataclasses.replace(a),))


def test_rules_carry_id_version_and_source() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    assert all(rule.version and rule.source and rule.summary for rule in RULES)
    # MODELS.md §5.1–8 each have a rule.
    assert {rule_id.split(".")[0] for rule_id in ids} >= {f"R{n}" for n in range(1, 9)}
    assert RULES_VERSION.startswith("rules/2026.11.2+")


def test_evidence_is_attached_per_option(kit: SimpleNamespace) -> None:
    record = kit.build_record()
    evidence = kit.build_evidence()
    rec = recommend(record, kit.build_scores(record), evidence, ISSUED_AT)
    by_modality = {o.modality: o.evidence for o in rec.options}
    assert by_modality[Modality.enp].study_ids == ["t1-chen-2009", "t1-you-2015"]
    assert [p.study_ids for p in by_modality[Modality.enp].pooled] == [["t1-chen-2009"]]
    assert by_modality[Modality.carbon_ion].study_ids == ["t3-hu-2018"]
    assert by_modality[Modality.systemic_therapy].study_ids == []  # no rows: empty, not absent


def test_unknown_scores_are_not_guessed(kit: SimpleNamespace) -> None:
    """computable=False means unknown: re-IMRT is not recommended on an unknown Li index."""
    record = kit.build_record({
        "recurrence.t_category": "T4",
        "recurrence.extension.intracranial": True,
        "recurrence.resectable": False,
    })
    scores = kit.build_scores(record, {"li2018_prognostic_index": kit.UNKNOWN})
    rec = recommend(record, scores, kit.build_evidence(), ISSUED_AT)
    reimrt = next(o for o in rec.options if o.modality == Modality.reimrt)
    assert reimrt.status == S.consider
    assert any("not computable" in w for w in reimrt.warnings)
