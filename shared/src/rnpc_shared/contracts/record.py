"""The recurrence record: the one validated input every ingest path converges on.

Validation here is structural and contractual (types, enums, units, ranges, date order); it
holds no clinical scoring. Unknown fields are rejected so a misspelt field never silently
defaults.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic_core import PydanticCustomError
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Integers stored in database columns (e.g. `version`) fit a 32-bit signed integer (PostgreSQL integer).
DB_INT_MAX = 2**31 - 1
# Case ids appear in URLs: letters, digits and . _ : - only, and never a dot segment ("." or "..").
RECURRENCE_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
# No calendar anywhere is past today in UTC+14 (Line Islands): the latest date "today" can be.
LATEST_UTC_OFFSET = timedelta(hours=14)
MAX_AGE_YEARS = 120  # the age_years bound below; a date before (today - 121 years) predates every patient


def latest_today() -> date:
    return (datetime.now(UTC) + LATEST_UTC_OFFSET).date()


def years_before(day: date, years: int) -> date:
    year = day.year - years
    if year < date.min.year:
        return date.min
    return day.replace(year=year, day=28) if (day.month, day.day) == (2, 29) else day.replace(year=year)


def not_dot_segment(value: str) -> str:
    if value in (".", ".."):
        raise PydanticCustomError("dot_segment", "'.' and '..' are not valid ids", {})
    return value


RecurrenceId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=RECURRENCE_ID_PATTERN), AfterValidator(not_dot_segment)
]


# Dose per fraction accepted for any course (MODELS.md §1: "dose per fraction 0.5–25 Gy").
MIN_DOSE_PER_FRACTION_GY = 0.5
MAX_DOSE_PER_FRACTION_GY = 25.0


class Strict(BaseModel):
    """Base for every contract model: unknown fields are an error, values are validated on assignment.

    Event readers validate with `read_tolerant` instead: fields added by a newer producer are
    ignored there (rolling deploys); strictness stays the rule at the HTTP ingest."""

    # NaN and ±Infinity are refused in every number: they are not JSON and no measurement.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


M = TypeVar("M", bound=BaseModel)


def read_tolerant(model: type[M], data: Any) -> M:
    """`data` validated as today's event reader: fields a newer producer added, at any depth, are
    ignored; every other rule holds. The usual case (nothing added) is one plain validation, with no
    Python call per nested object (a before-validator on every model cost a third of it)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        added = [error["loc"] for error in exc.errors() if error["type"] == "extra_forbidden"]
        if not added:
            raise
        try:
            trimmed = _without(data, added)
        except (KeyError, IndexError, TypeError):
            raise exc from None  # a location that is no path into the data: report what was found
    return model.model_validate(trimmed)  # raises the remaining errors, if any


def _without(data: Any, locations: list[tuple[int | str, ...]]) -> Any:
    """A copy of `data` without the values at `locations` (paths of dict keys and list indexes)."""
    trimmed = copy.deepcopy(data)
    for location in locations:
        parent = trimmed
        for step in location[:-1]:
            parent = parent[step]
        del parent[location[-1]]
    return trimmed


class Sex(StrEnum):
    male = "male"
    female = "female"


class Histology(StrEnum):
    who_type_1 = "who_type_1"
    who_type_2 = "who_type_2"
    who_type_3 = "who_type_3"


class Site(StrEnum):
    local = "local"
    regional = "regional"
    locoregional = "locoregional"


class TCategory(StrEnum):
    T0 = "T0"
    T1 = "T1"
    T2 = "T2"
    T3 = "T3"
    T4 = "T4"


class NCategory(StrEnum):
    N0 = "N0"
    N1 = "N1"
    N2 = "N2"
    N3 = "N3"


class MCategory(StrEnum):
    M0 = "M0"
    M1 = "M1"


class Parapharyngeal(StrEnum):
    none = "none"
    superficial = "superficial"
    deep = "deep"


class ResourceMode(StrEnum):
    normal = "normal"
    constrained = "constrained"


class SurgicalStage(StrEnum):
    I = "I"  # noqa: E741 - the published stage name
    II = "II"
    III = "III"
    IV = "IV"


class Modality(StrEnum):
    """Option ids of the contract; the first ten are local salvage options."""

    enp = "enp"
    tors = "tors"
    msnp = "msnp"
    neck_dissection = "neck_dissection"
    reimrt = "reimrt"
    srs = "srs"
    sbrt = "sbrt"
    proton = "proton"
    carbon_ion = "carbon_ion"
    brachytherapy = "brachytherapy"
    systemic_therapy = "systemic_therapy"
    best_supportive_care = "best_supportive_care"


LOCAL_MODALITIES: tuple[Modality, ...] = tuple(Modality)[:10]


class RtTechnique(StrEnum):
    imrt = "imrt"
    vmat = "vmat"
    three_d_crt = "3dcrt"
    two_d_rt = "2drt"
    proton = "proton"
    carbon_ion = "carbon_ion"
    brachytherapy = "brachytherapy"
    other = "other"


def _kps_multiple_of_ten(value: int | None) -> int | None:
    if value is not None and value % 10 != 0:
        raise PydanticCustomError("multiple_of", "kps must be a multiple of 10 in 0-100", {"multiple_of": 10})
    return value


class Patient(Strict):
    age_years: int = Field(ge=0, le=120, description="Age at recurrence, whole years")
    sex: Sex
    kps: Annotated[int | None, AfterValidator(_kps_multiple_of_ten)] = Field(
        default=None, ge=0, le=100, description="Karnofsky performance status, multiple of 10"
    )
    ecog: int | None = Field(default=None, ge=0, le=4, description="ECOG performance status")
    organ_dysfunction: bool | None = Field(
        default=None, description="Feeding-tube or tracheostomy dependence (Ward 2018)"
    )
    comorbidities: list[str] = Field(default_factory=list)


class Extension(Strict):
    """Extension of the recurrent tumour (AJCC 8th structures; None = not assessed)."""

    parapharyngeal: Parapharyngeal | None = None
    adjacent_soft_tissue: bool | None = Field(
        default=None, description="Medial/lateral pterygoid or prevertebral muscles (T2)"
    )
    skull_base_bone: bool | None = None
    cervical_vertebra: bool | None = None
    pterygoid_structures: bool | None = None
    paranasal_sinuses: bool | None = None
    cranial_nerves: bool | None = None
    intracranial: bool | None = None
    ica_encasement: bool | None = Field(default=None, description="ICA encasement or exposure")
    fossa_of_rosenmuller: bool | None = None
    foramen_lacerum: bool | None = None
    sphenoid_sinus: bool | None = None
    nasal_cavity: bool | None = None
    oropharynx: bool | None = None
    hypopharynx: bool | None = None
    orbit: bool | None = None
    parotid: bool | None = None
    beyond_lateral_pterygoid: bool | None = Field(
        default=None, description="Soft tissue beyond the lateral surface of the lateral pterygoid (T4)"
    )


class Neck(Strict):
    node_count: int | None = Field(default=None, ge=0, le=DB_INT_MAX)
    largest_node_cm: float | None = Field(default=None, gt=0, le=30)
    bilateral: bool | None = None
    below_cricoid: bool | None = Field(
        default=None, description="Nodal disease below the caudal border of the cricoid"
    )
    retropharyngeal_only: bool | None = None
    extranodal_extension: bool | None = None
    level_i: bool | None = Field(default=None, description="Level I nodal involvement")


class Recurrence(Strict):
    site: Site
    t_category: TCategory | None = None
    n_category: NCategory
    m_category: MCategory | None = None
    gtv_volume_cm3: float | None = Field(default=None, gt=0, le=1000)
    extension: Extension | None = None
    neck: Neck | None = None
    resectable: bool | None = Field(default=None, description="Surgeon's assessment")
    surgical_stage: SurgicalStage | None = None
    keratinizing: bool | None = None

    @model_validator(mode="after")
    def _t_required_unless_regional(self) -> Recurrence:
        if self.t_category is None and self.site != Site.regional:
            raise rule_error(
                "t_category", "t_required_unless_regional", "t_category is required unless site is 'regional'"
            )
        return self


class Restaging(Strict):
    mri_on: date | None = None
    pet_ct_on: date | None = None
    endoscopy_on: date | None = None
    nbi_used: bool | None = None
    biopsy_confirmed: bool | None = None


class Biomarkers(Strict):
    ebv_dna_copies_per_ml: float | None = Field(default=None, ge=0)
    nlr: float | None = Field(default=None, gt=0, le=100)


def rule_error(field: str, rule: str, message: str) -> PydanticCustomError:
    """A cross-field rule violation; `field` (relative to the model) lets the error name the field."""
    return PydanticCustomError("rule_violation", message, {"field": field, "rule": rule})


def _dose_per_fraction_ok(total_dose_gy: float, fractions: int, dose_field: str) -> None:
    dose_per_fraction_gy = total_dose_gy / fractions
    if not MIN_DOSE_PER_FRACTION_GY <= dose_per_fraction_gy <= MAX_DOSE_PER_FRACTION_GY:
        raise rule_error(
            dose_field,
            "dose_per_fraction_range",
            f"dose per fraction {dose_per_fraction_gy:.2f} Gy is outside "
            f"{MIN_DOSE_PER_FRACTION_GY}-{MAX_DOSE_PER_FRACTION_GY} Gy",
        )


class PriorTreatment(Strict):
    rt_end_on: date
    rt_technique: RtTechnique | None = None
    rt_total_dose_gy: float = Field(gt=0, le=150)
    rt_fractions: int = Field(ge=1, le=100)
    concurrent_chemotherapy: bool | None = None
    grade3_toxicity: bool | None = Field(default=None, description="Prior RT-induced grade >= 3 toxicity")
    grade3_toxicity_detail: list[str] = Field(default_factory=list)
    mucosal_necrosis: bool | None = Field(
        default=None, description="Nasopharyngeal mucosal necrosis before re-irradiation"
    )
    resected_before_reirradiation: bool | None = None
    prior_salvage: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fraction_size(self) -> PriorTreatment:
        _dose_per_fraction_ok(self.rt_total_dose_gy, self.rt_fractions, "rt_total_dose_gy")
        return self


class Context(Strict):
    resource_mode: ResourceMode = ResourceMode.normal
    available_modalities: list[Modality] | None = Field(
        default=None, description="Modalities the centre offers; absent = not stated"
    )


class PlannedReirradiation(Strict):
    total_dose_gy: float = Field(gt=0, le=100)
    fractions: int = Field(ge=1, le=100)
    fractions_per_day: int = Field(default=1, ge=1, le=3)

    @model_validator(mode="after")
    def _fraction_size(self) -> PlannedReirradiation:
        _dose_per_fraction_ok(self.total_dose_gy, self.fractions, "total_dose_gy")
        return self


class RecurrenceRecord(Strict):
    recurrence_id: RecurrenceId
    patient_ref: str = Field(
        min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$", description="Pseudonymous patient id"
    )
    source_system: str | None = Field(default=None, max_length=128)
    version: int = Field(ge=1, le=DB_INT_MAX)
    recorded_at: AwareDatetime | None = None
    diagnosed_on: date | None = None
    patient: Patient
    histology: Histology | None = None
    recurrence: Recurrence
    restaging: Restaging | None = None
    biomarkers: Biomarkers | None = None
    prior_treatment: PriorTreatment
    context: Context | None = None
    planned_reirradiation: PlannedReirradiation | None = None

    @field_validator("prior_treatment")
    @classmethod
    def _rt_before_recurrence(cls, prior: PriorTreatment, info: ValidationInfo) -> PriorTreatment:
        # Field order makes diagnosed_on / recorded_at available here, so the error names this field.
        recurrence_on = info.data.get("diagnosed_on") or (
            info.data["recorded_at"].date() if info.data.get("recorded_at") else None
        )
        if recurrence_on is not None and prior.rt_end_on >= recurrence_on:
            raise rule_error(
                "rt_end_on",
                "rt_end_before_recurrence",
                f"rt_end_on ({prior.rt_end_on}) must be before the recurrence date ({recurrence_on}: "
                "diagnosed_on, else recorded_at)",
            )
        return prior

    @model_validator(mode="after")
    def _dates_plausible(self) -> RecurrenceRecord:
        """No date in the future, none before the patient was born (from age at recurrence)."""
        today = latest_today()
        recurrence_on = self.recurrence_date
        if recurrence_on is not None:
            # age_years is whole years at the recurrence date: birth is at most age + 1 years before it
            earliest, anchor = years_before(recurrence_on, self.patient.age_years + 1), "birth (from age_years)"
        else:
            earliest, anchor = years_before(today, MAX_AGE_YEARS + 1), f"{MAX_AGE_YEARS + 1} years ago"
        for field, day in self._dates():
            if day > today:
                raise rule_error(field, "not_in_future", f"{field} ({day}) is in the future")
        for field, day in self._dates():
            if day < earliest:
                raise rule_error(field, "not_before_birth", f"{field} ({day}) is before {anchor}: {earliest}")
        return self

    def _dates(self) -> list[tuple[str, date]]:
        dates: list[tuple[str, date | None]] = [
            ("recorded_at", self.recorded_at.date() if self.recorded_at is not None else None),
            ("diagnosed_on", self.diagnosed_on),
            ("prior_treatment.rt_end_on", self.prior_treatment.rt_end_on),
        ]
        if self.restaging is not None:
            dates += [(f"restaging.{name}", getattr(self.restaging, name)) for name in ("mri_on", "pet_ct_on", "endoscopy_on")]
        return [(field, day) for field, day in dates if day is not None]

    @property
    def recurrence_date(self) -> date | None:
        """The recurrence's diagnosis date; the date of `recorded_at` when it is absent."""
        if self.diagnosed_on is not None:
            return self.diagnosed_on
        return self.recorded_at.date() if self.recorded_at is not None else None

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON form: equal records hash equal whatever their key order."""
        return model_hash(self)


SHA256_HEX = r"^[0-9a-f]{64}$"


# One encoder, built once: `json.dumps` with these options builds one per call (half of the call's
# time; every audit row and content hash is one call). The same options, so the same text.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: object) -> str:
    return _CANONICAL.encode(value)


def canonical_hash(value: object) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def model_hash(model: BaseModel) -> str:
    """The content hash of a contract model: SHA-256 of the canonical JSON of its JSON form (a
    record's content hash, an evidence base's, the scores' result hash)."""
    return canonical_hash(model.model_dump(mode="json"))

