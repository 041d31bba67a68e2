"""mCODE STU4 Bundle → native RecurrenceRecord: pure functions, no I/O.

`parse_bundle` validates every entry with fhir.resources (R4B) at the boundary; `map_bundle`
then reads the plain JSON (already known to be valid FHIR) and builds the record. Anything the
mapper cannot use raises `MappingError` naming the resource and the element; missing optional
data leaves the field empty (the models then say "not computable"). Nothing silently defaults.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import Any

import fhirpathpy
from fhirpathpy.models import models as fhirpath_models
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from rnpc_gateway.fhir import terminology as t
from rnpc_shared.contracts.record import (
    Biomarkers,
    MCategory,
    NCategory,
    Neck,
    Patient,
    PriorTreatment,
    Recurrence,
    RecurrenceRecord,
    Restaging,
    RtTechnique,
    Site,
    TCategory,
)

Resource = dict[str, Any]
BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "document", "history", "searchset"})
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


@dataclass(frozen=True)
class Issue:
    resource: str  # e.g. "Observation/cn-1" or "Bundle"
    element: str  # FHIR path inside that resource, e.g. "valueCodeableConcept.coding"
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"resource": self.resource, "element": self.element, "rule": self.rule, "message": self.message}


class MappingError(Exception):
    """The Bundle cannot become a record; `issues` name each resource and element."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(f"{i.resource}.{i.element}: {i.message}" for i in issues))
        self.issues = issues


def _fail(resource: str, element: str, rule: str, message: str) -> MappingError:
    return MappingError([Issue(resource, element, rule, message)])


@dataclass(frozen=True)
class Mapped:
    record: RecurrenceRecord
    notes: list[str] = field(default_factory=list)  # which choices the mapper made, for the caller


# ---------------------------------------------------------------- parsing (boundary validation)


def ref_of(resource: Resource) -> str:
    return f"{resource.get('resourceType', '?')}/{resource.get('id', '?')}"


def validate_resource(resource: Any, where: str) -> Resource:
    """Validate one resource with fhir.resources R4B; errors name the resource and element."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise _fail(where, "resourceType", "resource_type_required", "not a FHIR resource (no resourceType)")
    try:
        model = get_fhir_model_class(resource["resourceType"])
    except (KeyError, ValueError) as exc:
        raise _fail(where, "resourceType", "unknown_resource_type", f"unknown R4B resource type {resource['resourceType']!r}") from exc
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        issues = [
            Issue(ref_of(resource), ".".join(str(p) for p in err["loc"]) or "(resource)", err["type"], err["msg"])
            for err in exc.errors()[:10]
        ]
        raise MappingError(issues) from exc
    except RecursionError as exc:  # the validator recurses once per nesting level
        raise _fail(ref_of(resource), "(resource)", "nesting_too_deep", "elements nest too deeply to validate") from exc
    _profiles(resource)  # every profile a string, whether or not the mapper reads them
    return resource


def parse_bundle(bundle: Any) -> list[Resource]:
    """The Bundle's entry resources, each validated; the Bundle's own shape checked first."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _fail("Bundle", "resourceType", "bundle_required", "the body must be a FHIR Bundle")
    if not isinstance(bundle.get("type"), str) or bundle["type"] not in BUNDLE_TYPES:
        raise _fail("Bundle", "type", "bundle_type", f"Bundle.type {bundle.get('type')!r} is not one of {sorted(BUNDLE_TYPES)}")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise _fail("Bundle", "entry", "list_required", "Bundle.entry must be a list")
    out = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            continue  # e.g. a DELETE entry in a transaction: nothing to map
        out.append(validate_resource(resource, f"Bundle.entry[{index}]"))
    return out


# ---------------------------------------------------------------- small readers


def codings(concept: Any) -> list[dict[str, Any]]:
    return [c for c in (concept or {}).get("coding") or [] if isinstance(c, dict)]


def has_code(concept: Any, system: str, code: str) -> bool:
    return any(c.get("system") == system and c.get("code") == code for c in codings(concept))


def code_in(concept: Any, system: str, table: dict[str, Any]) -> str | None:
    for c in codings(concept):
        if c.get("system") == system and c.get("code") in table:
            return str(c["code"])
    return None


def _profiles(resource: Resource) -> list[str]:
    profiles = list((resource.get("meta") or {}).get("profile") or [])
    for index, profile in enumerate(profiles):
        if not isinstance(profile, str):  # fhir.resources lets a null through
            raise _fail(ref_of(resource), f"meta.profile[{index}]", "string_required", f"a profile is a canonical URL, not {type(profile).__name__}")
    return profiles


def has_profile(resource: Resource, name: str) -> bool:
    return any(p.split("|")[0] == t.MCODE_SD + name for p in _profiles(resource))


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None  # a partial date (year or year-month) cannot place an event before/after another
    return date.fromisoformat(value[:10])


def effective_date(resource: Resource) -> date | None:
    for key in ("effectiveDateTime", "issued"):
        if resource.get(key):
            return _date(resource[key])
    period = resource.get("effectivePeriod") or {}
    return _date(period.get("end") or period.get("start"))


def clinical_status(condition: Resource) -> str | None:
    for c in codings(condition.get("clinicalStatus")):
        if c.get("system") == t.CONDITION_CLINICAL:
            return str(c.get("code"))
    return None


def _icd10_codes(condition: Resource) -> list[str]:
    return [str(c.get("code", "")) for c in codings(condition.get("code")) if c.get("system") in (t.ICD10CM, t.ICD10)]


def _references(resource: Resource, key: str) -> list[str]:
    value = resource.get(key)
    items = value if isinstance(value, list) else [value] if value else []
    return [str(i.get("reference")) for i in items if isinstance(i, dict) and i.get("reference")]


def _extensions(element: Resource, url: str) -> list[Resource]:
    return [e for e in element.get("extension") or [] if e.get("url") == url]


# ---------------------------------------------------------------- the parts of the record


def local_ref(reference: str) -> str:
    """'https://ehr/fhir/Condition/1/_history/2' → 'Condition/1'."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:])


def find_recurrence(resources: list[Resource], focus: str | None = None) -> Resource:
    """The primary cancer Condition whose clinicalStatus is `recurrence` or `relapse` (the
    notification's focus when one is given)."""
    candidates = [
        r for r in resources if r["resourceType"] == "Condition" and clinical_status(r) in t.RECURRENCE_STATUSES
        and not has_profile(r, "mcode-secondary-cancer-condition")
        and (focus is None or ref_of(r) == local_ref(focus))
    ]
    if not candidates:
        raise _fail(
            "Condition", "clinicalStatus", "recurrence_condition_required",
            "no primary cancer Condition with clinicalStatus 'recurrence' or 'relapse' "
            f"({t.CONDITION_CLINICAL}) in the Bundle",
        )
    if len(candidates) > 1:
        raise _fail(
            ref_of(candidates[1]), "clinicalStatus", "one_recurrence_per_bundle",
            f"more than one recurrent cancer Condition ({', '.join(ref_of(c) for c in candidates)}): send one per Bundle",
        )
    condition = candidates[0]
    icd = _icd10_codes(condition)
    if icd and not any(code.startswith(t.NASOPHARYNX_ICD10_PREFIX) for code in icd):
        raise _fail(
            ref_of(condition), "code", "nasopharyngeal_cancer_required",
            f"ICD-10 code(s) {icd} are not nasopharyngeal carcinoma (C11.x)",
        )
    return condition


def map_patient(resources: list[Resource], recurrence_on: date | None) -> tuple[Resource, Patient]:
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    if not patients:
        raise _fail("Patient", "(resource)", "patient_required", "the Bundle holds no Patient (needed for age and sex)")
    patient = patients[0]
    born = _date(patient.get("birthDate"))
    if born is None:
        raise _fail(ref_of(patient), "birthDate", "full_date_required", "birthDate (YYYY-MM-DD) is needed for the age at recurrence")
    at = recurrence_on or date.today()
    age_years = at.year - born.year - ((at.month, at.day) < (born.month, born.day))
    gender = patient.get("gender")
    if gender not in ("male", "female"):
        raise _fail(ref_of(patient), "gender", "sex_male_or_female", f"gender {gender!r}: the models need male or female")
    return patient, Patient(age_years=age_years, sex=gender)


def _latest(observations: list[Resource]) -> Resource | None:
    dated = sorted(observations, key=lambda o: effective_date(o) or date.min)
    return dated[-1] if dated else None


def _observations(resources: list[Resource]) -> list[Resource]:
    return [
        r for r in resources
        if r["resourceType"] == "Observation" and r.get("status") not in ("entered-in-error", "cancelled", "preliminary")
    ]


def performance_status(observations: list[Resource]) -> tuple[int | None, int | None]:
    """(KPS, ECOG), each the latest valueInteger; KPS must be a multiple of 10."""
    out: list[int | None] = []
    for code in (t.LOINC_KARNOFSKY, t.LOINC_ECOG):
        latest = _latest([o for o in observations if has_code(o.get("code"), t.LOINC, code)])
        if latest is None:
            out.append(None)
            continue
        value = latest.get("valueInteger")
        if not isinstance(value, int):
            raise _fail(ref_of(latest), "valueInteger", "integer_required", f"LOINC {code} needs valueInteger")
        out.append(value)
    return out[0], out[1]


def _staging_after(observations: list[Resource], recurrence: Resource, after: date) -> dict[str, Resource]:
    """Per axis (T/N/M), the staging observation of the recurrence: focus on it, else dated after
    the prior radiotherapy ended (there is no rTNM slot; restaging usually precedes the recurrence's
    onset date, initial staging precedes the first course); latest wins, clinical first on a tie."""
    recurrence_ref = ref_of(recurrence)
    chosen: dict[str, tuple[tuple[date, int], Resource]] = {}
    for obs in observations:
        kind = code_in(obs.get("code"), t.SNOMED, t.STAGING_TYPES)
        if kind is None:
            continue
        axis, staging = t.STAGING_TYPES[kind]
        when = effective_date(obs)
        focused = recurrence_ref in _references(obs, "focus")
        if not focused and (when is None or when <= after):
            continue  # initial staging of the first cancer, not of the recurrence
        key = (when or date.min, 1 if staging == "clinical" else 0)
        if axis not in chosen or key > chosen[axis][0]:
            chosen[axis] = (key, obs)
    return {axis: obs for axis, (_, obs) in chosen.items()}


def _category(obs: Resource, table: dict[str, Any]) -> Any:
    value = obs.get("valueCodeableConcept")
    code = code_in(value, t.SNOMED, table)
    if code is None:
        found = [f"{c.get('system')}|{c.get('code')}" for c in codings(value)]
        raise _fail(
            ref_of(obs), "valueCodeableConcept", "ajcc_value_unmapped",
            f"AJCC category {found or '(none)'} is not in the SNOMED AJCC mapping table",
        )
    return table[code]


def _secondary_conditions(resources: list[Resource]) -> list[Resource]:
    return [
        r for r in resources
        if r["resourceType"] == "Condition" and has_profile(r, "mcode-secondary-cancer-condition")
        and clinical_status(r) not in t.INACTIVE_STATUSES
    ]


def _is_lymph_node(condition: Resource) -> bool:
    return any(code.startswith(t.LYMPH_NODE_ICD10_PREFIX) for code in _icd10_codes(condition))


def _quantity_cm(quantity: Any) -> float | None:
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        return None
    factor = {"cm": 1.0, "mm": 0.1}.get(str(quantity.get("code") or quantity.get("unit")))
    return None if factor is None else round(float(quantity["value"]) * factor, 3)


def tumour_measurements(observations: list[Resource], nodal_refs: set[str]) -> tuple[float | None, float | None, list[str]]:
    """(GTV cm3, largest node cm, notes). Size = component 33728-7 (value[x] is not used in mCODE);
    a size focused on a nodal (C77) condition is a node; volume comes from a local cm3 Observation."""
    volume_cm3: float | None = None
    largest_node_cm: float | None = None
    notes: list[str] = []
    for obs in observations:
        quantity = obs.get("valueQuantity") or {}
        if quantity.get("system") == t.UCUM and quantity.get("code") == "cm3" and quantity.get("value") is not None:
            volume_cm3 = float(quantity["value"])
            notes.append(f"gtv_volume_cm3 from {ref_of(obs)} (local Observation, UCUM cm3)")
        if not has_code(obs.get("code"), t.LOINC, t.LOINC_TUMOR_SIZE):
            continue
        major = [
            _quantity_cm(c.get("valueQuantity")) for c in obs.get("component") or []
            if has_code(c.get("code"), t.LOINC, t.LOINC_TUMOR_SIZE_MAJOR_AXIS)
        ]
        sizes = [m for m in major if m is not None]
        if not sizes:
            raise _fail(ref_of(obs), "component", "major_axis_required", "tumour size needs component 33728-7 in cm or mm")
        if nodal_refs & set(_references(obs, "focus")):
            largest_node_cm = max(largest_node_cm or 0.0, max(sizes))
        else:
            notes.append(f"{ref_of(obs)}: primary tumour major axis {max(sizes)} cm is not a model input; not used")
    return volume_cm3, largest_node_cm, notes


def ebv_dna(observations: list[Resource]) -> tuple[float | None, list[str]]:
    """EBV DNA as an mcode-tumor-marker-test, copies/mL; recognised by its code text (no LOINC
    binding in mCODE for it), the latest value wins."""
    candidates = []
    for obs in observations:
        if not has_profile(obs, "mcode-tumor-marker-test"):
            continue
        text = " ".join([str((obs.get("code") or {}).get("text", ""))] + [str(c.get("display", "")) for c in codings(obs.get("code"))])
        if "EBV" in text.upper() or "EPSTEIN" in text.upper():
            candidates.append(obs)
    latest = _latest(candidates)
    if latest is None:
        return None, []
    quantity = latest.get("valueQuantity") or {}
    if quantity.get("value") is None or "copies" not in str(quantity.get("code") or quantity.get("unit")).lower():
        raise _fail(ref_of(latest), "valueQuantity", "copies_per_ml_required", "EBV DNA needs a valueQuantity in copies/mL")
    return float(quantity["value"]), [f"ebv_dna_copies_per_ml from {ref_of(latest)}"]


# ---------------------------------------------------------------- restaging


# Where each resource type says when it was done: (element named in a problem, choice keys read).
_DATE_ELEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Procedure": ("performed[x]", ("performedDateTime", "performedPeriod")),
    "ImagingStudy": ("started", ("started",)),
    "DiagnosticReport": ("effective[x]", ("effectiveDateTime", "effectivePeriod")),  # not `issued`: the report's release
    "Observation": ("effective[x]", ("effectiveDateTime", "effectivePeriod", "effectiveInstant")),
}


def event_date(resource: Resource) -> date:
    """The day a study or procedure was done (a period's start). A recognised restaging resource
    without a usable full date is a problem naming the element: it cannot be placed against the
    end of the prior radiotherapy, and leaving it out would hide that it exists."""
    element, keys = _DATE_ELEMENTS[resource["resourceType"]]
    for key in keys:
        value = resource.get(key)
        if value is None:
            continue
        text = (value.get("start") or value.get("end")) if isinstance(value, dict) else value
        day = _date(text)
        if day is None:
            raise _fail(ref_of(resource), key, "full_date_required",
                        f"{key} {text!r} is not a full date (YYYY-MM-DD): the study cannot be placed against the prior radiotherapy")
        return day
    other = next((k for k in resource if k.startswith(element.removesuffix("[x]")) and k not in keys), None)
    raise _fail(ref_of(resource), other or element, "full_date_required",
                f"{other or element} gives no date (YYYY-MM-DD) of the study: needed to place it against the prior radiotherapy")


def _coded_kind(concepts: list[Any]) -> str | None:
    for concept in concepts:
        for c in codings(concept):
            kind = t.RESTAGING_CODES.get((str(c.get("system")), str(c.get("code"))))
            if kind is not None:
                return kind
    return None


def _sited_kind(resource: Resource) -> str | None:
    """A generic code (MRI, endoscopy) read only with a restaging body site."""
    sites = {str(c.get("code")) for concept in resource.get("bodySite") or [] for c in codings(concept) if c.get("system") == t.SNOMED}
    for c in codings(resource.get("code")):
        kind = t.SITED_CODES.get((str(c.get("system")), str(c.get("code"))))
        if kind is not None and sites & t.RESTAGING_SITES[kind]:
            return kind
    return None


def _imaging_study_kind(study: Resource) -> str | None:
    """DICOM modalities of the study and its series; body site from the series."""
    series = [s for s in study.get("series") or [] if isinstance(s, dict)]
    modalities = {
        str(c.get("code")) for c in [*(study.get("modality") or []), *(s.get("modality") for s in series)]
        if isinstance(c, dict) and c.get("system") == t.DCM
    }
    sites = {str(b.get("code")) for s in series if isinstance(b := s.get("bodySite"), dict) and b.get("system") == t.SNOMED}
    if t.DCM_PET_CT <= modalities and sites & t.RESTAGING_SITES[t.PET_CT]:
        return t.PET_CT
    if t.DCM_MR in modalities and sites & t.RESTAGING_SITES[t.MRI]:
        return t.MRI
    return None


def restaging_kind(resource: Resource) -> str | None:
    """t.MRI / t.PET_CT / t.ENDOSCOPY / t.HISTOLOGY when the resource records one, done; None for
    anything else (an unknown code is ignored, not an error)."""
    kind = resource["resourceType"]
    if resource.get("status") not in t.DONE_STATUSES.get(kind, frozenset()):
        return None
    if kind == "Procedure":
        return _coded_kind([resource.get("code")]) or _sited_kind(resource)
    if kind == "DiagnosticReport":  # R4 has no bodySite here: only codes that name the region
        return _coded_kind([resource.get("code")])
    if kind == "ImagingStudy":
        return _coded_kind(resource.get("procedureCode") or []) or _imaging_study_kind(resource)
    if kind == "Observation" and has_code(resource.get("code"), t.LOINC, t.LOINC_HISTOLOGIC_BEHAVIOR_AND_TYPE):
        return t.HISTOLOGY
    return None


def _tied_to(resource: Resource, recurrence: Resource) -> bool:
    """The resource names the recurrence (reasonReference, focus, mcode-related-condition), or the
    recurrence lists it as evidence (Condition.evidence.detail)."""
    refs = _references(resource, "reasonReference") + _references(resource, "focus") + [
        str((e.get("valueReference") or {}).get("reference")) for e in _extensions(resource, t.RELATED_CONDITION_EXT)
    ]
    if ref_of(recurrence) in {local_ref(r) for r in refs}:
        return True
    evidence = {local_ref(r) for e in recurrence.get("evidence") or [] for r in _references(e, "detail")}
    return ref_of(resource) in evidence


def _confirms_carcinoma(resource: Resource, recurrence: Resource) -> bool:
    """A histology Observation: a malignant ICD-O-3 behaviour in its value. A biopsy or pathology
    report carries no coded result, so it confirms only a recurrence verified as `confirmed`."""
    if resource["resourceType"] == "Observation":
        codes = [str(c.get("code")) for c in codings(resource.get("valueCodeableConcept")) if c.get("system") == t.ICDO3]
        return any(code.rpartition("/")[2] in t.MALIGNANT_BEHAVIOURS for code in codes)  # "8082/3" → "3"
    return has_code(recurrence.get("verificationStatus"), t.CONDITION_VERIFICATION, "confirmed")


def latest_restaging(dated: list[tuple[date, Resource]], rt_end_on: date, decision_on: date) -> tuple[date, Resource] | None:
    """The latest study after the prior RT ended and on or before the decision date; when none is,
    the latest of them all, passed through as is. Not filtered out: a study before the end of the
    prior course or after the decision is recorded but not current, and the workup rule
    (R1.workup_gate) names it as such; dropping it here would turn "done at the wrong time" into
    "not recorded" and hide the bad date from the clinician."""
    current = [(day, r) for day, r in dated if rt_end_on < day <= decision_on]
    return max(current or dated, key=lambda pair: pair[0], default=None)


def restaging(resources: list[Resource], recurrence: Resource, rt_end_on: date, decision_on: date) -> tuple[Restaging | None, list[str]]:
    """MRI / PET-CT / endoscopy dates and the histological confirmation of the recurrence. Unknown
    stays None (never False); None as a whole when the Bundle holds no restaging at all."""
    dated: dict[str, list[tuple[date, Resource]]] = {}
    notes: list[str] = []
    for resource in resources:
        kind = restaging_kind(resource)
        if kind is None:
            continue
        if kind == t.HISTOLOGY and not _tied_to(resource, recurrence):
            notes.append(f"{ref_of(resource)}: histology not linked to {ref_of(recurrence)} (reasonReference, focus, "
                         "mcode-related-condition or Condition.evidence): not read as its confirmation")
            continue
        dated.setdefault(kind, []).append((event_date(resource), resource))
    on: dict[str, date] = {}
    for kind in (t.MRI, t.PET_CT, t.ENDOSCOPY):
        chosen = latest_restaging(dated.get(kind, []), rt_end_on, decision_on)
        if chosen is not None:
            on[kind] = chosen[0]
            notes.append(f"restaging {kind} on {chosen[0]} from {ref_of(chosen[1])}")
    confirmed: bool | None = None
    for day, resource in dated.get(t.HISTOLOGY, []):
        # No date field to pass through here (biopsy_confirmed is a yes): out of the window, it is
        # the first diagnosis or an error, so it does not confirm this recurrence.
        if not rt_end_on < day <= decision_on:
            notes.append(f"{ref_of(resource)}: histology of {day} is not between the end of the prior RT ({rt_end_on}) "
                         f"and the decision ({decision_on}): not read as confirmation of the recurrence")
        elif _confirms_carcinoma(resource, recurrence):
            confirmed = True
            notes.append(f"biopsy_confirmed from {ref_of(resource)}")
        else:
            notes.append(f"{ref_of(resource)}: no malignant ICD-O-3 behaviour, or the recurrence is not verified "
                         "'confirmed': biopsy_confirmed left unknown")
    if not on and confirmed is None:
        return None, notes
    return (
        Restaging(mri_on=on.get(t.MRI), pet_ct_on=on.get(t.PET_CT), endoscopy_on=on.get(t.ENDOSCOPY), biopsy_confirmed=confirmed),
        notes,
    )


@cache
def _modality_technique_invariants() -> list[tuple[str, str]]:
    """The `mcode-radiotherapy-modality-and-technique` constraints (key, FHIRPath) of the profile."""
    text = resources.files("rnpc_gateway.fhir").joinpath("data/StructureDefinition-mcode-radiotherapy-modality-and-technique.json").read_text()
    definition = json.loads(text)
    root = definition["snapshot"]["element"][0]
    return [(c["key"], c["expression"]) for c in root.get("constraint", []) if c["key"] not in ("ele-1", "ext-1")]


def check_modality_technique(procedure: Resource) -> None:
    """Evaluate the profile's invariants with FHIRPath (e.g. photons need a technique)."""
    for index, ext in enumerate(_extensions(procedure, t.MCODE_SD + "mcode-radiotherapy-modality-and-technique")):
        for key, expression in _modality_technique_invariants():
            if fhirpathpy.evaluate(ext, expression, model=fhirpath_models["r4"]) == [False]:  # r4: value[x] choice types
                raise _fail(
                    ref_of(procedure), f"extension[modality-and-technique][{index}]", key,
                    f"invariant {key} of mcode-radiotherapy-modality-and-technique fails",
                )


def rt_technique(procedure: Resource) -> RtTechnique | None:
    for ext in _extensions(procedure, t.MCODE_SD + "mcode-radiotherapy-modality-and-technique"):
        technique = next(iter(_extensions(ext, t.MCODE_SD + "mcode-radiotherapy-technique")), {})
        modality = next(iter(_extensions(ext, t.MCODE_SD + "mcode-radiotherapy-modality")), {})
        code = code_in(technique.get("valueCodeableConcept"), t.SNOMED, t.RT_TECHNIQUES)
        if code is not None:
            return t.RT_TECHNIQUES[code]
        code = code_in(modality.get("valueCodeableConcept"), t.SNOMED, t.RT_MODALITIES)
        if code is not None:
            return t.RT_MODALITIES[code]
    return None


def _dose_volumes(procedure: Resource) -> list[tuple[float, int, str]]:
    """(total dose Gy, fractions, volume reference) per treated volume."""
    out = []
    for index, ext in enumerate(_extensions(procedure, t.MCODE_SD + "mcode-radiotherapy-dose-delivered-to-volume")):
        parts = {e.get("url"): e for e in ext.get("extension") or []}
        where = f"extension[dose-delivered-to-volume][{index}]"
        dose = (parts.get("totalDoseDelivered") or {}).get("valueQuantity") or {}
        fractions = (parts.get("fractionsDelivered") or {}).get("valueUnsignedInt")
        factor = t.DOSE_UNITS_TO_GY.get(str(dose.get("code")))
        if dose.get("value") is None or factor is None or dose.get("system") != t.UCUM:
            raise _fail(ref_of(procedure), f"{where}.totalDoseDelivered", "ucum_cgy_or_gy", "totalDoseDelivered needs a UCUM quantity in cGy or Gy")
        if not isinstance(fractions, int) or fractions < 1:
            raise _fail(ref_of(procedure), f"{where}.fractionsDelivered", "fractions_required", "fractionsDelivered is needed per treated volume")
        volume = ((parts.get("volume") or {}).get("valueReference") or {}).get("reference", f"volume {index + 1}")
        out.append((round(float(dose["value"]) * factor, 4), fractions, str(volume)))
    return out


def prior_treatment(resources: list[Resource], recurrence_on: date | None) -> tuple[PriorTreatment, list[str]]:
    """The latest *completed* radiotherapy course summary before the recurrence; the treated
    volume with the highest dose (the one covering the nasopharynx) gives dose and fractions."""
    courses = [
        r for r in resources
        if r["resourceType"] == "Procedure" and r.get("status") == "completed"
        and (has_profile(r, "mcode-radiotherapy-course-summary") or has_code(r.get("code"), t.SNOMED, t.SNOMED_RT_COURSE_SUMMARY))
    ]
    ended = [(_date((c.get("performedPeriod") or {}).get("end")), c) for c in courses]
    if any(end is None for end, _ in ended):
        bad = next(c for end, c in ended if end is None)
        raise _fail(ref_of(bad), "performedPeriod.end", "end_date_required", "a completed course needs performedPeriod.end (YYYY-MM-DD)")
    usable = sorted(((end, c) for end, c in ended if end is not None and (recurrence_on is None or end < recurrence_on)), key=lambda p: p[0])
    if not usable:
        raise _fail(
            "Procedure", "status", "completed_rt_course_required",
            "no radiotherapy course summary (SNOMED 1217123003) with status 'completed' ending before the recurrence",
        )
    end, course = usable[-1]
    check_modality_technique(course)
    volumes = _dose_volumes(course)
    if not volumes:
        raise _fail(ref_of(course), "extension[dose-delivered-to-volume]", "dose_required", "the course summary gives no dose delivered to a volume")
    dose_gy, fractions, volume = max(volumes, key=lambda v: v[0])
    notes = [f"prior course {ref_of(course)}: {dose_gy:g} Gy in {fractions} fx to {volume} (highest of {len(volumes)} treated volume(s))"]
    surgeries = [
        r for r in resources
        if r["resourceType"] == "Procedure" and r.get("status") == "completed" and has_profile(r, "mcode-cancer-related-surgical-procedure")
    ]
    salvage = [
        str((s.get("code") or {}).get("text") or next((c.get("display") for c in codings(s.get("code")) if c.get("display")), ref_of(s)))
        for s in surgeries
    ]
    return (
        PriorTreatment(
            rt_end_on=end,
            rt_technique=rt_technique(course),
            rt_total_dose_gy=dose_gy,
            rt_fractions=fractions,
            prior_salvage=salvage,
        ),
        notes,
    )


def _histology(resources: list[Resource], recurrence: Resource) -> tuple[Any, bool | None]:
    for condition in [recurrence] + [r for r in resources if r["resourceType"] == "Condition" and has_profile(r, "mcode-primary-cancer-condition")]:
        for ext in _extensions(condition, t.MCODE_SD + "mcode-histology-morphology-behavior"):
            code = code_in(ext.get("valueCodeableConcept"), t.ICDO3, t.HISTOLOGY_ICDO3)
            if code is not None:
                return t.HISTOLOGY_ICDO3[code]
    return None, None


def site_of(t_category: TCategory | None, n_category: NCategory | None, ref: str) -> Site:
    local = t_category is not None and t_category != TCategory.T0
    nodal = n_category is not None and n_category != NCategory.N0
    if local and nodal:
        return Site.locoregional
    if local:
        return Site.local
    if nodal:
        return Site.regional
    raise _fail(ref, "(staging)", "recurrent_disease_required", "no recurrent T (T1-T4) nor N (N1-N3) category: the site of the recurrence is unknown")


def recurrence_id_of(condition: Resource) -> str:
    return "fhir-" + _ID_UNSAFE.sub("-", str(condition.get("id") or "condition"))[:120]


def version_of(condition: Resource) -> int:
    version_id = str((condition.get("meta") or {}).get("versionId") or "1")
    return int(version_id) if version_id.isdigit() and int(version_id) >= 1 else 1


def map_resources(
    resources: list[Resource], *, source_system: str = "fhir", focus: str | None = None, decision_on: date | None = None
) -> Mapped:
    """Validated resources (one patient, one recurrence) → the native record. `decision_on`
    (default: today, UTC, as the recommendation's issue date) bounds which restaging is current."""
    recurrence = find_recurrence(resources, focus)
    onset = _date(recurrence.get("onsetDateTime")) or _date(recurrence.get("recordedDate"))
    patient_resource, patient = map_patient(resources, onset)
    observations = _observations(resources)
    patient.kps, patient.ecog = performance_status(observations)
    prior, prior_notes = prior_treatment(resources, onset)
    staging = _staging_after(observations, recurrence, prior.rt_end_on)
    t_category = _category(staging["T"], t.T_VALUES) if "T" in staging else None
    n_category = _category(staging["N"], t.N_VALUES) if "N" in staging else None
    m_category = _category(staging["M"], t.M_VALUES) if "M" in staging else None
    secondary = _secondary_conditions(resources)
    nodal = [c for c in secondary if _is_lymph_node(c)]
    distant = [c for c in secondary if not _is_lymph_node(c)]
    notes: list[str] = []
    if distant:
        m_category = MCategory.M1  # a non-nodal secondary cancer condition is distant disease
        notes.append(f"m_category M1 from {', '.join(ref_of(c) for c in distant)}")
    if n_category is None:
        raise _fail(
            "Observation", "code", "n_category_required",
            "no regional-nodes category (SNOMED 399534004 / 371494008) for the recurrence (focus on it, or dated after the prior course)",
        )
    site = site_of(t_category, n_category, ref_of(recurrence))
    volume_cm3, largest_node_cm, size_notes = tumour_measurements(observations, {ref_of(c) for c in nodal})
    ebv, ebv_notes = ebv_dna(observations)
    histology, keratinizing = _histology(resources, recurrence)
    restaged, restaging_notes = restaging(resources, recurrence, prior.rt_end_on, decision_on or datetime.now(UTC).date())
    record = RecurrenceRecord(
        recurrence_id=recurrence_id_of(recurrence),
        patient_ref=str(patient_resource.get("id") or "unknown"),
        source_system=source_system,
        version=version_of(recurrence),
        diagnosed_on=onset,
        patient=patient,
        histology=histology,
        recurrence=Recurrence(
            site=site,
            t_category=t_category,
            n_category=n_category,
            m_category=m_category,
            gtv_volume_cm3=volume_cm3,
            neck=Neck(largest_node_cm=largest_node_cm) if largest_node_cm is not None else None,
            keratinizing=keratinizing,
        ),
        restaging=restaged,
        biomarkers=Biomarkers(ebv_dna_copies_per_ml=ebv) if ebv is not None else None,
        prior_treatment=prior,
    )
    return Mapped(record=record, notes=notes + size_notes + ebv_notes + prior_notes + restaging_notes)


def map_bundle(bundle: Any, *, source_system: str = "fhir", decision_on: date | None = None) -> Mapped:
    """A posted Bundle → the record (validation with fhir.resources first)."""
    return map_validated(parse_bundle(bundle), source_system=source_system, decision_on=decision_on)


def map_validated(
    resources: list[Resource], *, source_system: str = "fhir", focus: str | None = None, decision_on: date | None = None
) -> Mapped:
    try:
        return map_resources(resources, source_system=source_system, focus=focus, decision_on=decision_on)
    except ValidationError as exc:  # mapped values that break the record's own rules
        raise MappingError(record_validation_issues(exc)) from exc


def record_validation_issues(exc: ValidationError) -> list[Issue]:
    """The record's own rules broken by mapped values, named as record fields."""
    return [Issue("RecurrenceRecord", ".".join(str(p) for p in e["loc"]), e["type"], e["msg"]) for e in exc.errors()]
