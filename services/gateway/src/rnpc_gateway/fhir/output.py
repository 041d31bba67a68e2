"""A stored recommendation as FHIR R4: GuidanceResponse + RequestGroup (CDS Hooks profiles) and
the EQD2 of the prior and planned courses as Observations shaped like the CodeX RT radiobiologic
metric. Pure functions over the stored JSON; unknown fields of the recommendation are ignored
(the recommendation contract grows)."""

from __future__ import annotations

from typing import Any

UCUM = "http://unitsofmeasure.org"
CDS_HOOKS_ENDPOINT_EXT = "http://hl7.org/fhir/StructureDefinition/cqf-cdsHooksEndpoint"
RADIOBIOLOGIC_METRIC_EXT = "http://hl7.org/fhir/us/codex-radiation-therapy/StructureDefinition/codexrt-radiobiologic-metric"
IDENTIFIER_SYSTEM = "urn:rnpc:recommendation"
INPUT_HASH_SYSTEM = "urn:rnpc:input-hash"
RULES_ARTIFACT = "urn:rnpc:rules"

# recommendation.status → GuidanceResponse.status
GUIDANCE_STATUS = {"complete": "success", "workup_incomplete": "data-required", "not_local_candidate": "success"}
# option.status → RequestGroup.action.priority (FHIR request-priority)
OPTION_PRIORITY = {"recommended": "urgent", "consider": "routine"}

MODALITY_TITLES = {
    "enp": "Endoscopic nasopharyngectomy", "tors": "Transoral robotic surgery", "msnp": "Maxillary swing nasopharyngectomy",
    "neck_dissection": "Neck dissection", "reimrt": "Re-irradiation (IMRT)", "srs": "Stereotactic radiosurgery",
    "sbrt": "Stereotactic body radiotherapy", "proton": "Proton re-irradiation", "carbon_ion": "Carbon-ion re-irradiation",
    "brachytherapy": "Brachytherapy", "systemic_therapy": "Systemic therapy", "best_supportive_care": "Best supportive care",
}


def fhir_id(text: str) -> str:
    """A FHIR id ([A-Za-z0-9-.]{1,64}) from any text."""
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)[:64]


def modality_title(modality: str) -> str:
    return MODALITY_TITLES.get(modality, modality.replace("_", " ").capitalize())


def _schedule_text(schedule: dict[str, Any] | None) -> str | None:
    if not schedule:
        return None
    text = f"{schedule.get('total_dose_gy')} Gy in {schedule.get('fractions')} fractions"
    if schedule.get("eqd2_gy") is not None:
        text += f" (EQD2 {schedule['eqd2_gy']} Gy, α/β {schedule.get('alpha_beta_gy', 10)} Gy)"
    return text


def _service_request(option: dict[str, Any], subject: dict[str, str], sr_id: str) -> dict[str, Any]:
    reasons = [r for r in option.get("reasons") or [] if isinstance(r, dict)]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest", "id": sr_id, "status": "draft", "intent": "proposal",
        "code": {"text": modality_title(str(option.get("modality")))}, "subject": subject,
    }
    notes = [{"text": f"{r.get('text')} [{r.get('source')}]"} for r in reasons if r.get("text")]
    schedule = _schedule_text(option.get("schedule"))
    if schedule:
        resource["orderDetail"] = [{"text": schedule}]
    if notes:
        resource["note"] = notes
    return resource


def _action(option: dict[str, Any], sr_id: str) -> dict[str, Any]:
    reasons = [r for r in option.get("reasons") or [] if isinstance(r, dict)]
    status = str(option.get("status"))
    action: dict[str, Any] = {
        "title": f"{modality_title(str(option.get('modality')))}: {status.replace('_', ' ')}",
        "priority": OPTION_PRIORITY.get(status, "routine"),
        "resource": {"reference": f"#{sr_id}"},
    }
    if reasons and reasons[0].get("text"):
        action["description"] = str(reasons[0]["text"])
    sources = sorted({str(r["source"]) for r in reasons if r.get("source")})
    if sources:
        action["documentation"] = [{"type": "citation", "display": s} for s in sources]
    return action


def guidance_response(
    recommendation: dict[str, Any], *, resource_id: str, patient_ref: str, module_uri: str, request_id: str | None = None
) -> dict[str, Any]:
    """GuidanceResponse with the RequestGroup and one ServiceRequest per option contained."""
    subject = {"reference": f"Patient/{fhir_id(patient_ref)}"}
    identifier = {"system": IDENTIFIER_SYSTEM, "value": f"{recommendation.get('recurrence_id')}/v{recommendation.get('version')}"}
    issued = str(recommendation.get("issued_at"))
    options = sorted((o for o in recommendation.get("options") or [] if isinstance(o, dict)), key=lambda o: o.get("rank", 99))
    service_requests, actions = [], []
    for option in options:
        sr_id = fhir_id(f"sr-{option.get('modality')}")
        service_requests.append(_service_request(option, subject, sr_id))
        actions.append(_action(option, sr_id))
    request_group: dict[str, Any] = {
        "resourceType": "RequestGroup", "id": "requestgroup",
        "identifier": [identifier], "instantiatesUri": [module_uri],
        "status": "active", "intent": "proposal", "subject": subject, "authoredOn": issued,
    }
    if actions:
        request_group["action"] = actions
    notes = [str(w) for w in recommendation.get("warnings") or []] + [f"Required work-up: {w}" for w in recommendation.get("required_workup") or []]
    if recommendation.get("disclaimer"):
        notes.append(str(recommendation["disclaimer"]))
    if notes:
        request_group["note"] = [{"text": n} for n in notes]
    return {
        "resourceType": "GuidanceResponse",
        "id": fhir_id(resource_id),
        "extension": [{"url": CDS_HOOKS_ENDPOINT_EXT, "valueUri": module_uri}],
        "contained": [request_group, *service_requests],
        "identifier": [identifier],
        "requestIdentifier": (
            {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{request_id}"} if request_id
            else {"system": INPUT_HASH_SYSTEM, "value": str(recommendation.get("input_hash"))}
        ),
        "moduleUri": module_uri,
        "status": GUIDANCE_STATUS.get(str(recommendation.get("status")), "success"),
        "subject": subject,
        "occurrenceDateTime": issued,
        "result": {"reference": "#requestgroup"},
    }


def eqd2_observations(scores: dict[str, Any] | None, *, patient_ref: str, issued_at: str, id_prefix: str) -> list[dict[str, Any]]:
    """EQD2 of the prior and planned course (from the scoring models) as Observations carrying the
    CodeX radiobiologic-metric extension (TG-263 notation 'EQD2Gy(a/b=<α/β>)', Gy)."""
    results = (scores or {}).get("results") or {}
    alpha_beta = ((scores or {}).get("parameters") or {}).get("alpha_beta_tumour_gy", 10.0)
    out = []
    for model, label in (("eqd2_prior_course", "prior"), ("eqd2_planned_course", "planned")):
        result = results.get(model) or {}
        if not result.get("computable") or result.get("value") is None:
            continue  # e.g. no planned course: nothing to report, not a zero
        out.append({
            "resourceType": "Observation",
            "id": fhir_id(f"{id_prefix}-eqd2-{label}"),
            "extension": [{"url": RADIOBIOLOGIC_METRIC_EXT, "valueString": f"EQD2Gy(a/b={alpha_beta:g})"}],
            "status": "final",
            "code": {"text": f"EQD2 of the {label} radiotherapy course"},
            "subject": {"reference": f"Patient/{fhir_id(patient_ref)}"},
            "effectiveDateTime": issued_at,
            "valueQuantity": {"value": float(result["value"]), "unit": "Gy", "system": UCUM, "code": "Gy"},
            "note": [{"text": f"{model} {result.get('version', '')} ({result.get('status', '')}): {result.get('citation', '')}"}],
        })
    return out


def searchset(resources: list[tuple[dict[str, Any], str]], base_url: str) -> dict[str, Any]:
    """A searchset Bundle; each resource with its search mode (match | include)."""
    return {
        "resourceType": "Bundle", "type": "searchset",
        "total": sum(1 for _, mode in resources if mode == "match"),
        "entry": [
            {"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": mode}}
            for r, mode in resources
        ],
    }
