"""Writes the nasopharyngeal mCODE STU4 example Bundles of this folder (run: python examples/fhir/generate.py).

Built on the shapes of the mCODE STU4 examples (CC0). Fictional patients. Edit here, not the JSON.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
HERE = Path(__file__).parent


def cc(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def patient(pid: str, gender: str, born: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient", "id": pid, "meta": {"profile": [MCODE + "mcode-cancer-patient"]},
        "identifier": [{"system": "urn:example:mrn", "value": pid.upper()}],
        "name": [{"family": "Example", "given": [pid]}], "gender": gender, "birthDate": born,
    }


def condition(cid: str, pid: str, status: str, onset: str, *, icdo3: str | None = None, secondary: str | None = None, version: str = "1") -> dict[str, Any]:
    profile = "mcode-secondary-cancer-condition" if secondary else "mcode-primary-cancer-condition"
    resource: dict[str, Any] = {
        "resourceType": "Condition", "id": cid, "meta": {"profile": [MCODE + profile], "versionId": version},
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", status),
        "verificationStatus": cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
        "category": [cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")],
        "code": cc("http://hl7.org/fhir/sid/icd-10-cm", secondary or "C11.9", None if secondary else "Malignant neoplasm of nasopharynx, unspecified"),
        "subject": {"reference": f"Patient/{pid}"}, "onsetDateTime": onset,
    }
    if icdo3:
        resource["extension"] = [{"url": MCODE + "mcode-histology-morphology-behavior",
                                  "valueCodeableConcept": cc("http://terminology.hl7.org/CodeSystem/icd-o-3", icdo3)}]
    return resource


TNM = {"T": ("399504009", "mcode-tnm-primary-tumor-category"), "N": ("399534004", "mcode-tnm-regional-nodes-category"),
       "M": ("399387003", "mcode-tnm-distant-metastases-category")}
VALUES = {"cT0": "1228882005", "cT1": "1228889001", "cT2": "1228929004", "cT3": "1228938002", "cT4": "1228944003",
          "cN0": "1229967007", "cN1": "1229973008", "cN2": "1229978004", "cN3": "1229984001",
          "cM0": "1229901006", "cM1": "1229903009"}


def tnm(oid: str, pid: str, value: str, when: str, focus: str | None = None) -> dict[str, Any]:
    code, profile = TNM[value[1]]
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "meta": {"profile": [MCODE + profile]}, "status": "final",
        "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "imaging")],
        "code": cc(SCT, code), "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
        "valueCodeableConcept": cc(SCT, VALUES[value], f"American Joint Committee on Cancer {value} (qualifier value)"),
        "method": cc(SCT, "897275008", "American Joint Commission on Cancer, Cancer Staging Manual, 8th edition neoplasm staging system (tumor staging)"),
    }
    if focus:
        resource["focus"] = [{"reference": focus}]
    return resource


def performance(oid: str, pid: str, kind: str, value: int, when: str) -> dict[str, Any]:
    code, profile = {"kps": ("89243-0", "mcode-karnofsky-performance-status"), "ecog": ("89247-1", "mcode-ecog-performance-status")}[kind]
    return {"resourceType": "Observation", "id": oid, "meta": {"profile": [MCODE + profile]}, "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "survey")],
            "code": cc(LOINC, code), "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when, "valueInteger": value}


def rt_course(pid_: str, pid: str, start: str, end: str, volumes: list[tuple[str, int, int]], *, modality: str = "1156506007",
              technique: str | None = "441799006", status: str = "completed") -> dict[str, Any]:
    mt: dict[str, Any] = {"url": MCODE + "mcode-radiotherapy-modality-and-technique", "extension": [
        {"url": MCODE + "mcode-radiotherapy-modality", "valueCodeableConcept": cc(SCT, modality)}]}
    if technique == "UNC":  # a technique outside the value set: NullFlavor UNC with its text (profile rule)
        concept = {**cc("http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNC"), "text": "Intensity-modulated proton therapy"}
        mt["extension"].append({"url": MCODE + "mcode-radiotherapy-technique", "valueCodeableConcept": concept})
    elif technique:
        mt["extension"].append({"url": MCODE + "mcode-radiotherapy-technique", "valueCodeableConcept": cc(SCT, technique)})
    doses = [{"url": MCODE + "mcode-radiotherapy-dose-delivered-to-volume", "extension": [
        {"url": "volume", "valueReference": {"reference": f"BodyStructure/{name}"}},
        {"url": "totalDoseDelivered", "valueQuantity": {"value": cgy, "unit": "cGy", "system": UCUM, "code": "cGy"}},
        {"url": "fractionsDelivered", "valueUnsignedInt": fx}]} for name, cgy, fx in volumes]
    return {"resourceType": "Procedure", "id": pid_, "meta": {"profile": [MCODE + "mcode-radiotherapy-course-summary"]},
            "extension": [{"url": MCODE + "mcode-radiotherapy-sessions", "valueUnsignedInt": max(fx for _, _, fx in volumes)}, mt, *doses],
            "status": status, "code": cc(SCT, "1217123003", "Radiotherapy course of treatment (regime/therapy)"),
            "subject": {"reference": f"Patient/{pid}"}, "performedPeriod": {"start": start, "end": end}}


def ebv(oid: str, pid: str, copies: float, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "meta": {"profile": [MCODE + "mcode-tumor-marker-test"]}, "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
            "code": {"text": "EBV DNA, plasma (quantitative PCR)"}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when, "valueQuantity": {"value": copies, "unit": "copies/mL", "system": UCUM, "code": "{copies}/mL"}}


def volume(oid: str, pid: str, cm3: float, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "Recurrent GTV volume (MRI contour)"},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": cm3, "unit": "cm3", "system": UCUM, "code": "cm3"}}


def node_size(oid: str, pid: str, cm: float, when: str, focus: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "meta": {"profile": [MCODE + "mcode-tumor-size"]}, "status": "final",
            "code": cc(LOINC, "21889-1", "Size Tumor"), "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
            "focus": [{"reference": focus}],
            "component": [{"code": cc(LOINC, "33728-7"), "valueQuantity": {"value": cm * 10, "unit": "mm", "system": UCUM, "code": "mm"}}]}


DCM = "http://dicom.nema.org/resources/ontology/DCM"
NASOPHARYNX = ("71836000", "Nasopharyngeal structure (body structure)")
WHOLE_BODY = ("38266002", "Entire body as a whole (body structure)")


def imaging_study(iid: str, pid: str, modalities: list[str], started: str, site: tuple[str, str], description: str) -> dict[str, Any]:
    """A DICOM study summary (R4 ImagingStudy): modalities (DCM) and the series' body site (SNOMED)."""
    series = [{"uid": f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, f'urn:rnpc-example:{iid}:{m}').int}", "modality": {"system": DCM, "code": m},
               "bodySite": {"system": SCT, "code": site[0], "display": site[1]}} for m in modalities]
    return {"resourceType": "ImagingStudy", "id": iid, "status": "available", "subject": {"reference": f"Patient/{pid}"},
            "started": started, "modality": [{"system": DCM, "code": m} for m in modalities], "description": description,
            "numberOfSeries": len(series), "series": series}


def report(rid: str, pid: str, system: str, code: str, display: str, when: str, conclusion: str) -> dict[str, Any]:
    return {"resourceType": "DiagnosticReport", "id": rid, "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD")], "code": cc(system, code, display),
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when, "issued": f"{when}T16:00:00Z", "conclusion": conclusion}


def procedure(pid_: str, pid: str, code: str, display: str, when: str, *, site: tuple[str, str] | None = None,
              reason: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Procedure", "id": pid_, "status": "completed", "code": cc(SCT, code, display),
                                "subject": {"reference": f"Patient/{pid}"}, "performedDateTime": when}
    if site:
        resource["bodySite"] = [cc(SCT, *site)]
    if reason:
        resource["reasonReference"] = [{"reference": reason}]
    return resource


def bundle(bid: str, kind: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for r in resources:
        entry: dict[str, Any] = {"fullUrl": f"urn:uuid:{bid}-{r['resourceType'].lower()}-{r['id']}", "resource": r}
        if kind in ("transaction", "batch"):
            entry["request"] = {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
        entries.append(entry)
    return {"resourceType": "Bundle", "id": bid, "type": kind, "entry": entries}


def examples() -> dict[str, dict[str, Any]]:
    out = {}
    p = "npc-early-local"
    out[p] = bundle(p, "transaction", [
        patient(p, "male", "1974-05-02"),
        condition("npc-early-local-rec", p, "recurrence", "2026-11-18", icdo3="8082/3"),
        tnm("el-ct-initial", p, "cT3", "2021-10-01"),  # initial staging: before the recurrence, ignored
        tnm("el-ct", p, "cT2", "2026-11-12"), tnm("el-cn", p, "cN0", "2026-11-12"), tnm("el-cm", p, "cM0", "2026-11-12"),
        performance("el-kps", p, "kps", 90, "2026-11-15"),
        rt_course("el-rt", p, "2022-01-20", "2022-03-15", [("el-nasopharynx", 7000, 33)]),
        ebv("el-ebv", p, 1200, "2026-11-10"), volume("el-gtv", p, 14.5, "2026-11-10"),
    ])
    p = "npc-neck-only"
    out[p] = bundle(p, "collection", [
        patient(p, "female", "1979-08-30"),
        condition("npc-neck-only-rec", p, "recurrence", "2026-10-05", icdo3="8072/3"),
        condition("npc-neck-only-node", p, "active", "2026-10-05", secondary="C77.0"),
        tnm("no-ct", p, "cT0", "2026-09-28"), tnm("no-cn", p, "cN1", "2026-09-28"),
        performance("no-kps", p, "kps", 80, "2026-10-01"),
        node_size("no-node-size", p, 2.8, "2026-09-28", "Condition/npc-neck-only-node"),
        rt_course("no-rt", p, "2023-02-01", "2023-03-20", [("no-nasopharynx", 6996, 33)], technique="1156530009"),
    ])
    p = "npc-metastatic"
    out[p] = bundle(p, "batch", [
        patient(p, "male", "1965-01-11"),
        condition("npc-metastatic-rec", p, "recurrence", "2026-09-01", icdo3="8082/3"),
        condition("npc-metastatic-lung", p, "active", "2026-09-01", secondary="C78.01"),
        tnm("mt-ct", p, "cT3", "2026-08-25"), tnm("mt-cn", p, "cN2", "2026-08-25"), tnm("mt-cm", p, "cM1", "2026-08-25"),
        performance("mt-kps", p, "kps", 70, "2026-08-30"),
        rt_course("mt-rt", p, "2021-04-01", "2021-05-20", [("mt-nasopharynx", 7000, 35)]),
        ebv("mt-ebv", p, 25000, "2026-08-20"),
    ])
    p = "npc-ecog"
    out[p] = bundle(p, "collection", [
        patient(p, "female", "1968-12-24"),
        condition("npc-ecog-rec", p, "recurrence", "2026-06-30"),
        tnm("ec-ct", p, "cT4", "2026-06-20", focus="Condition/npc-ecog-rec"), tnm("ec-cn", p, "cN0", "2026-06-20", focus="Condition/npc-ecog-rec"),
        performance("ec-ecog", p, "ecog", 1, "2026-06-25"),
        rt_course("ec-rt", p, "2020-09-01", "2020-10-16", [("ec-nasopharynx", 6600, 30)], modality="10611004", technique="UNC"),
    ])
    p = "npc-two-volumes-relapse"
    out[p] = bundle(p, "transaction", [
        patient(p, "male", "1982-03-15"),
        condition("npc-two-volumes-rec", p, "relapse", "2026-11-02", icdo3="8071/3", version="3"),
        tnm("tv-ct", p, "cT1", "2026-10-28"), tnm("tv-cn", p, "cN0", "2026-10-28"),
        performance("tv-kps", p, "kps", 100, "2026-10-30"),
        rt_course("tv-rt", p, "2022-05-02", "2022-06-17", [("tv-neck", 5000, 25), ("tv-nasopharynx", 7000, 35)]),
        # a course summary still being updated in place: never read
        rt_course("tv-rt-ongoing", p, "2026-11-20", "2026-11-25", [("tv-boost", 2000, 10)], status="in-progress"),
    ])
    p = "npc-restaged"
    out[p] = bundle(p, "collection", [
        patient(p, "female", "1971-07-09"),
        condition("npc-restaged-rec", p, "recurrence", "2026-10-20", icdo3="8082/3"),
        tnm("rs-ct", p, "cT2", "2026-10-14"), tnm("rs-cn", p, "cN1", "2026-10-14"), tnm("rs-cm", p, "cM0", "2026-10-15"),
        performance("rs-kps", p, "kps", 90, "2026-10-16"),
        rt_course("rs-rt", p, "2021-03-01", "2021-04-15", [("rs-nasopharynx", 7000, 33)]),
        # staging MRI of the first cancer (before the course ended): not the restaging
        imaging_study("rs-mri-2020", p, ["MR"], "2020-12-20", NASOPHARYNX, "MRI nasopharynx, initial staging"),
        imaging_study("rs-mri", p, ["MR"], "2026-10-12", NASOPHARYNX, "MRI nasopharynx and skull base"),
        report("rs-petct", p, SCT, "443271005", "Positron emission tomography with computed tomography of whole body using "
               "fluorodeoxyglucose (18-F) (procedure)", "2026-10-15", "No distant metastasis."),
        procedure("rs-endoscopy", p, "423827005", "Endoscopy (procedure)", "2026-10-08", site=NASOPHARYNX),
        procedure("rs-biopsy", p, "86273004", "Biopsy (procedure)", "2026-10-08", site=NASOPHARYNX, reason="Condition/npc-restaged-rec"),
        # an ultrasound of the neck: not a restaging study this mapper reads (ignored, not an error)
        procedure("rs-us-neck", p, "241453007", "Ultrasound scan of neck (procedure)", "2026-10-05"),
    ])
    return out


if __name__ == "__main__":
    for name, content in examples().items():
        (HERE / f"{name}.json").write_text(json.dumps(content, indent=2) + "\n")
