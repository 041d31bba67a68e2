"""The mCODE → record mapper: tables cell by cell, the nasopharyngeal Bundles field by field (the
restaging too), every copied mCODE example parsed or refused with a named reason."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest

from rnpc_gateway.fhir import terminology as t
from rnpc_gateway.fhir.mapping import MappingError, map_bundle, ref_of, restaging_kind, rt_technique, site_of
from rnpc_shared.contracts.record import NCategory, RtTechnique, Site, TCategory

from .conftest import MCODE_EXAMPLES, load_example

SCT = "http://snomed.info/sct"


def _staging_obs(code: str, value: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "x", "status": "final", "code": {"coding": [{"system": SCT, "code": code}]},
            "effectiveDateTime": "2026-11-12", "valueCodeableConcept": {"coding": [{"system": SCT, "code": value}]}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1222604002", None), ("1228882005", "T0"), ("1228889001", "T1"), ("1228929004", "T2"), ("1228938002", "T3"),
     ("1228944003", "T4"), ("1228950008", None), ("1228951007", "T0"), ("1228957006", "T1"), ("1229852009", "T2"),
     ("1229859000", "T3"), ("1229864001", "T4")],
)
def test_t_value_table(value: str, expected: str | None) -> None:
    assert t.T_VALUES[value] == (None if expected is None else TCategory(expected))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1229966003", None), ("1229967007", "N0"), ("1229973008", "N1"), ("1229978004", "N2"), ("1229984001", "N3"),
     ("1229945006", None), ("1229947003", "N0"), ("1229951001", "N1"), ("1229957002", "N2"), ("1229962001", "N3")],
)
def test_n_value_table(value: str, expected: str | None) -> None:
    assert t.N_VALUES[value] == (None if expected is None else NCategory(expected))


@pytest.mark.parametrize(("value", "expected"), [("1229901006", "M0"), ("1229903009", "M1"), ("1229916009", "M1")])
def test_m_value_table(value: str, expected: str) -> None:
    assert t.M_VALUES[value] == expected


@pytest.mark.parametrize(
    ("code", "axis", "kind"),
    [("399504009", "T", "clinical"), ("399534004", "N", "clinical"), ("399387003", "M", "clinical"),
     ("384625004", "T", "pathologic"), ("371494008", "N", "pathologic"), ("371497001", "M", "pathologic")],
)
def test_staging_type_table(code: str, axis: str, kind: str) -> None:
    assert t.STAGING_TYPES[code] == (axis, kind)


def _mt(modality: str, technique: str | None) -> dict[str, Any]:
    base = t.MCODE_SD
    ext: dict[str, Any] = {"url": base + "mcode-radiotherapy-modality-and-technique", "extension": [
        {"url": base + "mcode-radiotherapy-modality", "valueCodeableConcept": {"coding": [{"system": SCT, "code": modality}]}}]}
    if technique:
        ext["extension"].append({"url": base + "mcode-radiotherapy-technique", "valueCodeableConcept": {"coding": [{"system": SCT, "code": technique}]}})
    return {"resourceType": "Procedure", "id": "p", "extension": [ext]}


@pytest.mark.parametrize(
    ("modality", "technique", "expected"),
    [("1156506007", "441799006", "imrt"), ("1156506007", "1156530009", "vmat"), ("1156506007", "1162782007", "3dcrt"),
     ("10611004", None, "proton"), ("1156505006", None, "carbon_ion"), ("394902000", None, "brachytherapy"),
     ("438629002", None, "brachytherapy"), ("1156708005", None, "brachytherapy"), ("1156384006", None, "brachytherapy"),
     ("169359004", None, "brachytherapy"), ("45643008", None, "other"), ("80347004", None, "other"), ("1156506007", None, "other")],
)
def test_modality_and_technique_table(modality: str, technique: str | None, expected: str) -> None:
    assert rt_technique(_mt(modality, technique)) == RtTechnique(expected)


@pytest.mark.parametrize(
    ("code", "histology", "keratinizing"),
    [("8071/3", "who_type_1", True), ("8072/3", "who_type_2", False), ("8082/3", "who_type_3", False)],
)
def test_histology_table(code: str, histology: str, keratinizing: bool) -> None:
    assert t.HISTOLOGY_ICDO3[code] == (histology, keratinizing)


@pytest.mark.parametrize(
    ("t_cat", "n_cat", "site"),
    [("T2", "N0", "local"), ("T0", "N1", "regional"), (None, "N2", "regional"), ("T3", "N2", "locoregional")],
)
def test_site_rule(t_cat: str | None, n_cat: str, site: str) -> None:
    assert site_of(TCategory(t_cat) if t_cat else None, NCategory(n_cat), "Condition/x") == Site(site)


def test_site_rule_refuses_no_disease() -> None:
    with pytest.raises(MappingError) as info:
        site_of(TCategory.T0, NCategory.N0, "Condition/x")
    assert info.value.issues[0].rule == "recurrent_disease_required"


def _record(name: str) -> dict[str, Any]:
    return map_bundle(load_example(name)).record.model_dump(mode="json", exclude_none=True)


def test_early_local_bundle_field_by_field() -> None:
    mapped = map_bundle(load_example("npc-early-local"))
    record = mapped.record.model_dump(mode="json", exclude_none=True)
    assert record["recurrence_id"] == "fhir-npc-early-local-rec"
    assert (record["patient_ref"], record["version"], record["diagnosed_on"]) == ("npc-early-local", 1, "2026-11-18")
    assert record["patient"] == {"age_years": 52, "sex": "male", "kps": 90, "comorbidities": []}
    assert record["histology"] == "who_type_3"
    # initial staging cT3 (2021, before the first course ended) is ignored; restaging cT2 is used
    assert record["recurrence"] == {"site": "local", "t_category": "T2", "n_category": "N0", "m_category": "M0",
                                    "gtv_volume_cm3": 14.5, "keratinizing": False}
    assert record["biomarkers"] == {"ebv_dna_copies_per_ml": 1200.0}
    prior = record["prior_treatment"]
    assert (prior["rt_end_on"], prior["rt_technique"], prior["rt_total_dose_gy"], prior["rt_fractions"]) == ("2022-03-15", "imrt", 70.0, 33)


def test_neck_only_bundle_is_regional_with_node_size_in_cm() -> None:
    record = _record("npc-neck-only")
    assert record["recurrence"] == {"site": "regional", "t_category": "T0", "n_category": "N1",
                                    "neck": {"largest_node_cm": 2.8}, "keratinizing": False}
    assert "m_category" not in record["recurrence"]  # C77.0 is nodal disease, not M1
    assert record["patient"]["sex"] == "female" and record["patient"]["kps"] == 80
    assert record["histology"] == "who_type_2"
    assert record["prior_treatment"]["rt_technique"] == "vmat"
    assert record["prior_treatment"]["rt_total_dose_gy"] == pytest.approx(69.96)


def test_metastatic_bundle_is_m1() -> None:
    record = _record("npc-metastatic")
    assert record["recurrence"]["m_category"] == "M1"
    assert (record["recurrence"]["site"], record["recurrence"]["t_category"], record["recurrence"]["n_category"]) == ("locoregional", "T3", "N2")
    assert record["biomarkers"]["ebv_dna_copies_per_ml"] == 25000.0
    assert record["patient"] == {"age_years": 61, "sex": "male", "kps": 70, "comorbidities": []}


def test_ecog_instead_of_kps_and_proton_modality() -> None:
    record = _record("npc-ecog")
    assert record["patient"] == {"age_years": 57, "sex": "female", "ecog": 1, "comorbidities": []}
    assert "kps" not in record["patient"]
    assert record["recurrence"]["t_category"] == "T4"
    assert "histology" not in record  # no morphology given: left empty, not guessed
    assert record["prior_treatment"]["rt_technique"] == "proton"
    assert record["prior_treatment"]["rt_total_dose_gy"] == 66.0


def test_two_volumes_in_cgy_and_relapse_status() -> None:
    mapped = map_bundle(load_example("npc-two-volumes-relapse"))
    prior = mapped.record.prior_treatment
    # 7000 cGy / 35 fx to the nasopharynx is chosen over 5000 cGy / 25 fx to the neck; the
    # in-progress course of 2026 is never read
    assert (prior.rt_total_dose_gy, prior.rt_fractions, str(prior.rt_end_on)) == (70.0, 35, "2022-06-17")
    assert any("BodyStructure/tv-nasopharynx" in n and "2 treated volume" in n for n in mapped.notes)
    assert mapped.record.version == 3  # Condition.meta.versionId
    assert mapped.record.histology == "who_type_1" and mapped.record.recurrence.keratinizing is True


def _issue(bundle: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(MappingError) as info:
        map_bundle(bundle)
    return info.value.issues[0].as_dict()


def _resource(bundle: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == rid)


def test_unmapped_ajcc_value_names_resource_and_element() -> None:
    bundle = load_example("npc-early-local")
    _resource(bundle, "el-cn")["valueCodeableConcept"]["coding"][0]["code"] = "999999"
    issue = _issue(bundle)
    assert (issue["resource"], issue["element"], issue["rule"]) == ("Observation/el-cn", "valueCodeableConcept", "ajcc_value_unmapped")


def test_photons_without_technique_fails_the_profile_invariant() -> None:
    bundle = load_example("npc-early-local")
    rt = _resource(bundle, "el-rt")
    rt["extension"][1]["extension"] = rt["extension"][1]["extension"][:1]  # modality only
    issue = _issue(bundle)
    assert issue["resource"] == "Procedure/el-rt" and issue["rule"] == "TechniquesForPhotonBeamModality"


def test_dose_in_an_unknown_unit_is_refused() -> None:
    bundle = load_example("npc-early-local")
    _resource(bundle, "el-rt")["extension"][2]["extension"][1]["valueQuantity"]["code"] = "rad"
    issue = _issue(bundle)
    assert issue["resource"] == "Procedure/el-rt" and issue["element"].endswith("totalDoseDelivered")


def test_course_not_completed_is_never_read() -> None:
    bundle = load_example("npc-early-local")
    _resource(bundle, "el-rt")["status"] = "in-progress"
    assert _issue(bundle)["rule"] == "completed_rt_course_required"


def test_invalid_fhir_names_the_element() -> None:
    bundle = load_example("npc-early-local")
    _resource(bundle, "el-kps")["valueInteger"] = "ninety"
    issue = _issue(bundle)
    assert issue["resource"] == "Observation/el-kps" and "valueInteger" in issue["element"]


def _nested_extension(levels: int) -> dict[str, Any]:
    extension: dict[str, Any] = {"url": "http://x", "valueString": "x"}
    for _ in range(levels):
        extension = {"url": "http://x", "extension": [extension]}
    return extension


def test_extensions_nested_too_deeply_to_validate_name_the_resource() -> None:
    bundle = load_example("npc-early-local")
    bundle["entry"][0]["resource"]["extension"] = [_nested_extension(300)]
    issue = _issue(bundle)
    assert issue["rule"] == "nesting_too_deep" and issue["resource"] == ref_of(bundle["entry"][0]["resource"])


@pytest.mark.parametrize(("change", "expected"), [
    (lambda b: b.update(type=["collection"]), ("Bundle", "type", "bundle_type")),
    (lambda b: b["entry"][1]["resource"].setdefault("meta", {}).update(profile=[None]), (None, "meta.profile[0]", "string_required")),
], ids=["type a list", "null profile"])
def test_bundle_shape_errors_name_the_element(change: Any, expected: tuple[str | None, str, str]) -> None:
    bundle = load_example("npc-early-local")
    change(bundle)
    issue = _issue(bundle)
    resource, element, rule = expected
    assert (issue["element"], issue["rule"]) == (element, rule)
    assert issue["resource"] == (resource or ref_of(bundle["entry"][1]["resource"]))


def test_kps_not_multiple_of_ten_is_a_record_rule() -> None:
    bundle = load_example("npc-early-local")
    _resource(bundle, "el-kps")["valueInteger"] = 85
    issue = _issue(bundle)
    assert issue["resource"] == "RecurrenceRecord" and issue["element"].endswith("kps")


def test_other_cancer_is_refused() -> None:
    bundle = load_example("npc-early-local")
    _resource(bundle, "npc-early-local-rec")["code"]["coding"][0]["code"] = "C50.911"
    assert _issue(bundle)["rule"] == "nasopharyngeal_cancer_required"


def test_missing_optional_data_leaves_fields_empty() -> None:
    bundle = copy.deepcopy(load_example("npc-early-local"))
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["id"] not in ("el-kps", "el-ebv", "el-gtv", "el-cm")]
    record = map_bundle(bundle).record
    assert (record.patient.kps, record.biomarkers, record.recurrence.gtv_volume_cm3, record.recurrence.m_category) == (None, None, None, None)


@pytest.mark.parametrize("path", sorted(MCODE_EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_every_copied_mcode_example_parses_or_is_refused_with_a_reason(path) -> None:  # noqa: ANN001
    resource = json.loads(path.read_text())
    bundle = resource if resource["resourceType"] == "Bundle" else {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}
    with pytest.raises(MappingError) as info:  # none of them is a nasopharyngeal recurrence
        map_bundle(bundle)
    issue = info.value.issues[0]
    assert issue.resource and issue.element and issue.rule and issue.message


# ---------------------------------------------------------------- restaging

DECISION = date(2026, 11, 1)  # the bundles' decision date: after the npc-restaged workup of Oct 2026
SCT_HN_MRI, SCT_PETCT, SCT_MRI, SCT_ENDOSCOPY, SCT_BIOPSY = "702725003", "443271005", "113091000", "423827005", "86273004"


@pytest.mark.parametrize(
    ("system", "code", "kind"),
    [(SCT, SCT_HN_MRI, "mri"), ("http://loinc.org", "30860-1", "mri"), (SCT, SCT_PETCT, "pet_ct"),
     (SCT, SCT_BIOPSY, "histology"), ("http://loinc.org", "11529-5", "histology")],
)
def test_restaging_code_table(system: str, code: str, kind: str) -> None:
    assert t.RESTAGING_CODES[(system, code)] == kind


@pytest.mark.parametrize(("code", "kind", "sites"), [(SCT_MRI, "mri", {"71836000", "774007"}), (SCT_ENDOSCOPY, "endoscopy", {"71836000"})])
def test_sited_code_table(code: str, kind: str, sites: set[str]) -> None:
    assert t.SITED_CODES[(SCT, code)] == kind and t.RESTAGING_SITES[kind] == sites


def _procedure(code: str, site: str | None = None, when: str = "2026-10-10", system: str = SCT) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Procedure", "id": "p", "status": "completed", "code": {"coding": [{"system": system, "code": code}]},
                                "subject": {"reference": "Patient/x"}, "performedDateTime": when}
    if site:
        resource["bodySite"] = [{"coding": [{"system": SCT, "code": site}]}]
    return resource


def _study(modalities: list[str], site: str) -> dict[str, Any]:
    dcm = "http://dicom.nema.org/resources/ontology/DCM"
    return {"resourceType": "ImagingStudy", "id": "s", "status": "available", "started": "2026-10-10",
            "modality": [{"system": dcm, "code": m} for m in modalities],
            "series": [{"uid": "1.2", "modality": {"system": dcm, "code": m}, "bodySite": {"system": SCT, "code": site}} for m in modalities]}


@pytest.mark.parametrize(
    ("resource", "kind"),
    [(_procedure(SCT_HN_MRI), "mri"), (_procedure(SCT_PETCT), "pet_ct"),
     (_procedure(SCT_MRI, "71836000"), "mri"), (_procedure(SCT_MRI, "774007"), "mri"),
     (_procedure(SCT_MRI, "72696002"), None),  # an MRI of the knee is no restaging
     (_procedure(SCT_MRI), None),  # a generic MRI without a site: region unknown
     (_procedure(SCT_ENDOSCOPY, "71836000"), "endoscopy"), (_procedure(SCT_ENDOSCOPY, "774007"), None),
     (_procedure("241453007"), None),  # ultrasound of the neck: not in the table
     ({**_procedure(SCT_HN_MRI), "status": "in-progress"}, None), ({**_procedure(SCT_HN_MRI), "status": "not-done"}, None),
     (_study(["MR"], "71836000"), "mri"), (_study(["MR"], "38266002"), None), (_study(["PT", "CT"], "38266002"), "pet_ct"),
     (_study(["PT", "CT"], "71836000"), None),  # PET/CT of the head only cannot exclude distant disease
     (_study(["CT"], "38266002"), None), ({**_study(["MR"], "71836000"), "status": "registered"}, None)],
)
def test_restaging_kind_cell_by_cell(resource: dict[str, Any], kind: str | None) -> None:
    assert restaging_kind(resource) == kind


def _restaged() -> dict[str, Any]:
    return copy.deepcopy(load_example("npc-restaged"))


def _without(bundle: dict[str, Any], *ids: str) -> dict[str, Any]:
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["id"] not in ids]
    return bundle


def test_restaging_from_mri_petct_endoscopy_and_biopsy_field_by_field() -> None:
    mapped = map_bundle(_restaged(), decision_on=DECISION)
    restaging = mapped.record.model_dump(mode="json")["restaging"]
    # the 2020 staging MRI (before the first course ended) loses to the restaging MRI of 2026;
    # the neck ultrasound is not read; NBI is not coded anywhere, so it stays unknown
    assert restaging == {"mri_on": "2026-10-12", "pet_ct_on": "2026-10-15", "endoscopy_on": "2026-10-08",
                         "nbi_used": None, "biopsy_confirmed": True}
    assert "restaging mri on 2026-10-12 from ImagingStudy/rs-mri" in mapped.notes
    assert "biopsy_confirmed from Procedure/rs-biopsy" in mapped.notes
    assert mapped.record.recurrence.m_category == "M0"  # the rest of the record is mapped as before


def test_imaging_before_the_prior_rt_end_is_mapped_as_is() -> None:
    # only the 2020 staging MRI is left: passed through (not hidden as "not recorded") so that the
    # workup rule can say it predates the end of the prior course
    record = map_bundle(_without(_restaged(), "rs-mri"), decision_on=DECISION).record
    assert record.restaging is not None and str(record.restaging.mri_on) == "2020-12-20"
    assert record.restaging.mri_on <= record.prior_treatment.rt_end_on


def test_imaging_after_the_decision_date_is_mapped_as_is() -> None:
    record = map_bundle(_without(_restaged(), "rs-mri-2020"), decision_on=date(2026, 10, 13)).record
    assert record.restaging is not None
    # the MRI of 10-12 is current on 10-13; the PET/CT of 10-15 is the only one and is kept
    assert (str(record.restaging.mri_on), str(record.restaging.pet_ct_on)) == ("2026-10-12", "2026-10-15")


def test_bundle_without_restaging_has_none() -> None:
    assert map_bundle(load_example("npc-early-local"), decision_on=DECISION).record.restaging is None
    record = map_bundle(_without(_restaged(), "rs-mri", "rs-mri-2020", "rs-petct", "rs-endoscopy", "rs-biopsy"), decision_on=DECISION).record
    assert record.restaging is None


def test_only_some_restaging_leaves_the_rest_unknown_not_false() -> None:
    restaging = map_bundle(_without(_restaged(), "rs-petct", "rs-biopsy"), decision_on=DECISION).record.restaging
    assert restaging is not None and (restaging.pet_ct_on, restaging.biopsy_confirmed) == (None, None)


def test_biopsy_not_linked_to_the_recurrence_is_not_a_confirmation() -> None:
    bundle = _restaged()
    del _resource(bundle, "rs-biopsy")["reasonReference"]
    mapped = map_bundle(bundle, decision_on=DECISION)
    assert mapped.record.restaging is not None and mapped.record.restaging.biopsy_confirmed is None
    assert any("Procedure/rs-biopsy: histology not linked" in n for n in mapped.notes)


def test_biopsy_linked_through_condition_evidence() -> None:
    bundle = _restaged()
    del _resource(bundle, "rs-biopsy")["reasonReference"]
    _resource(bundle, "npc-restaged-rec")["evidence"] = [{"detail": [{"reference": "Procedure/rs-biopsy"}]}]
    assert map_bundle(bundle, decision_on=DECISION).record.restaging.biopsy_confirmed is True  # type: ignore[union-attr]


def test_biopsy_of_an_unconfirmed_recurrence_confirms_nothing() -> None:
    bundle = _restaged()
    _resource(bundle, "npc-restaged-rec")["verificationStatus"]["coding"][0]["code"] = "provisional"
    assert map_bundle(bundle, decision_on=DECISION).record.restaging.biopsy_confirmed is None  # type: ignore[union-attr]


def test_biopsy_before_the_prior_rt_end_is_the_first_diagnosis() -> None:
    bundle = _restaged()
    _resource(bundle, "rs-biopsy")["performedDateTime"] = "2021-01-05"
    mapped = map_bundle(bundle, decision_on=DECISION)
    assert mapped.record.restaging.biopsy_confirmed is None  # type: ignore[union-attr]
    assert any("Procedure/rs-biopsy: histology of 2021-01-05" in n for n in mapped.notes)


def _histology_obs(value: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "rs-histology", "status": "final",
            "meta": {"profile": [t.MCODE_SD + "mcode-histologic-behavior-and-type"]},
            "extension": [{"url": t.RELATED_CONDITION_EXT, "valueReference": {"reference": "Condition/npc-restaged-rec"}}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "31206-6"}]}, "subject": {"reference": "Patient/npc-restaged"},
            "effectiveDateTime": "2026-10-09", "valueCodeableConcept": {"coding": [{"system": t.ICDO3, "code": value}]}}


@pytest.mark.parametrize(("value", "confirmed"), [("8082/3", True), ("8071/3", True), ("8000/6", True), ("8000/0", None), ("8010/2", None)])
def test_mcode_histology_observation_confirms_a_malignant_recurrence(value: str, confirmed: bool | None) -> None:
    bundle = _without(_restaged(), "rs-biopsy")
    bundle["entry"].append({"resource": _histology_obs(value)})
    assert map_bundle(bundle, decision_on=DECISION).record.restaging.biopsy_confirmed is confirmed  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rid", "element", "value"),
    [("rs-mri", "started", "2026-10"), ("rs-petct", "effectiveDateTime", "2026"), ("rs-endoscopy", "performedDateTime", "2026-10"),
     ("rs-endoscopy", "performedPeriod", {"start": "2026-10"}), ("rs-biopsy", "performedString", "last week")],
)
def test_recognised_restaging_with_an_unusable_date_names_resource_and_element(rid: str, element: str, value: Any) -> None:
    bundle = _restaged()
    resource = _resource(bundle, rid)
    for key in ("started", "effectiveDateTime", "performedDateTime"):
        resource.pop(key, None)
    resource[element] = value
    issue = _issue(bundle)
    assert (issue["resource"].split("/")[1], issue["element"], issue["rule"]) == (rid, element, "full_date_required")


def test_recognised_restaging_without_a_date_names_the_choice_element() -> None:
    bundle = _restaged()
    del _resource(bundle, "rs-petct")["effectiveDateTime"]
    issue = _issue(bundle)
    assert (issue["resource"], issue["element"]) == ("DiagnosticReport/rs-petct", "effective[x]")


def test_unrecognised_resource_with_a_bad_date_is_ignored() -> None:
    bundle = _restaged()
    _resource(bundle, "rs-us-neck")["performedDateTime"] = "2026"
    assert map_bundle(bundle, decision_on=DECISION).record.restaging is not None
