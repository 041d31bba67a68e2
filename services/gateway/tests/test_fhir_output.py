"""FHIR output: GuidanceResponse + RequestGroup (CDS Hooks profile elements, rqg-1) and the EQD2
observations, validated with fhir.resources R4B and the invariants checked with fhirpathpy."""

from __future__ import annotations

from typing import Any

import fhirpathpy
from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy.models import models

from rnpc_shared.contracts.scores import Scores
from rnpc_gateway.fhir.output import CDS_HOOKS_ENDPOINT_EXT, RADIOBIOLOGIC_METRIC_EXT, eqd2_observations, guidance_response

from .conftest import sample_recommendation

MODULE = "https://cds.example.org/cds-services/rnpc-patient-view"
RQG_1 = "action.all((resource.exists() != action.exists()))"  # R4 RequestGroup rule rqg-1
# R4 dom-3 (every contained resource is referenced from the resource), reference part
DOM_3 = "contained.where(('#' + id in %resource.descendants().reference).not()).empty()"


def _validate(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def _guidance() -> dict[str, Any]:
    recommendation = {**sample_recommendation("rec-out-1"), "a_field_added_later": {"x": 1}}
    return guidance_response(recommendation, resource_id="3f0c", patient_ref="pt-out", module_uri=MODULE, request_id="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea")


def test_guidance_response_validates_and_carries_the_cds_hooks_profile_elements() -> None:
    guidance = _guidance()
    _validate(guidance)
    assert guidance["identifier"] == [{"system": "urn:rnpc:recommendation", "value": "rec-out-1/v1"}]
    assert guidance["extension"] == [{"url": CDS_HOOKS_ENDPOINT_EXT, "valueUri": MODULE}]
    assert guidance["requestIdentifier"]["value"] == "urn:uuid:d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    assert (guidance["status"], guidance["moduleUri"], guidance["result"]) == ("success", MODULE, {"reference": "#requestgroup"})
    assert fhirpathpy.evaluate(guidance, DOM_3, {"resource": guidance}, model=models["r4"]) == [True]  # every contained resource is referenced


def test_request_group_has_identifier_instantiates_uri_and_satisfies_rqg_1() -> None:
    group = _guidance()["contained"][0]
    _validate(group)
    assert group["identifier"][0]["value"] == "rec-out-1/v1" and group["instantiatesUri"] == [MODULE]
    assert [a["title"] for a in group["action"]] == [
        "Endoscopic nasopharyngectomy: recommended", "Re-irradiation (IMRT): consider", "Carbon-ion re-irradiation: contraindicated"]
    assert fhirpathpy.evaluate(group, RQG_1, model=models["r4"]) == [True]
    broken = {**group, "action": [{"title": "a title alone"}]}
    assert fhirpathpy.evaluate(broken, RQG_1, model=models["r4"]) == [False]  # the check can fail


def test_service_requests_carry_the_schedule() -> None:
    requests = {r["id"]: r for r in _guidance()["contained"][1:]}
    for resource in requests.values():
        _validate(resource)
    assert requests["sr-reimrt"]["orderDetail"] == [{"text": "60.0 Gy in 50 fractions (EQD2 57.5 Gy, α/β 10.0 Gy)"}]


def test_eqd2_observations_have_the_radiobiologic_metric_shape() -> None:
    scores = Scores.model_validate({"parameters": {"alpha_beta_tumour_gy": 10.0}, "models_version": "m1", "results": {
        "eqd2_prior_course": {"model": "eqd2_prior_course", "computable": True, "value": 70.0, "unit": "Gy", "version": "1", "status": "exact",
                              "citation": "MODELS.md §2"},
        "eqd2_planned_course": {"model": "eqd2_planned_course", "computable": False, "version": "1", "status": "exact",
                                "missing_inputs": ["planned_reirradiation"], "citation": "MODELS.md §2"},
    }}).model_dump(mode="json")  # the Scores contract's shape, as the scoring service answers
    [prior] = eqd2_observations(scores, patient_ref="pt-out", issued_at="2026-11-20T10:00:00Z", id_prefix="3f0c")
    _validate(prior)
    assert prior["extension"] == [{"url": RADIOBIOLOGIC_METRIC_EXT, "valueString": "EQD2Gy(a/b=10)"}]
    assert prior["valueQuantity"] == {"value": 70.0, "unit": "Gy", "system": "http://unitsofmeasure.org", "code": "Gy"}
    assert eqd2_observations(None, patient_ref="p", issued_at="2026-11-20T10:00:00Z", id_prefix="x") == []
