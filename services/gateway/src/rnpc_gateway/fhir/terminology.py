"""Code tables of the mCODE STU4 → native record mapping (each cell is tested).

Sources: mCODE STU4 (hl7.fhir.us.mcode 4.0.0) examples and profiles (staging-type codes, the
radiotherapy modality/technique codes of the `mcode-radiotherapy-modality-and-technique`
invariants); SNOMED CT AJCC 8th qualifier values (cT/cN/cM/pT/pN/pM, e.g. 1228938002 = cT3, as
in the mCODE examples); ICD-O-3 morphology codes for the WHO types of nasopharyngeal carcinoma.
"""

from __future__ import annotations

from typing import Final

from rnpc_shared.contracts.record import Histology, MCategory, NCategory, RtTechnique, TCategory

SNOMED: Final = "http://snomed.info/sct"
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10: Final = "http://hl7.org/fhir/sid/icd-10"
ICDO3: Final = "http://terminology.hl7.org/CodeSystem/icd-o-3"
CONDITION_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
MCODE_SD: Final = "http://hl7.org/fhir/us/mcode/StructureDefinition/"

# Condition.clinicalStatus codes that mean "this cancer came back" (mCODE: interchangeable).
RECURRENCE_STATUSES: Final = frozenset({"recurrence", "relapse"})
# Statuses under which a secondary cancer condition no longer counts as present disease.
INACTIVE_STATUSES: Final = frozenset({"inactive", "remission", "resolved"})

# TNM staging-type codes (Observation.code), SNOMED, mCODE STU4 → which axis and which kind.
STAGING_TYPES: Final[dict[str, tuple[str, str]]] = {
    "399504009": ("T", "clinical"),
    "399534004": ("N", "clinical"),
    "399387003": ("M", "clinical"),
    "384625004": ("T", "pathologic"),
    "371494008": ("N", "pathologic"),
    "371497001": ("M", "pathologic"),
}

# AJCC value concepts (Observation.valueCodeableConcept, SNOMED) → native category.
# None = "cannot be assessed" (X): the field stays empty.
T_VALUES: Final[dict[str, TCategory | None]] = {
    "1222604002": None,  # cTX
    "1228882005": TCategory.T0,  # cT0
    "1228889001": TCategory.T1,  # cT1
    "1228929004": TCategory.T2,  # cT2
    "1228938002": TCategory.T3,  # cT3
    "1228944003": TCategory.T4,  # cT4
    "1228950008": None,  # pTX
    "1228951007": TCategory.T0,  # pT0
    "1228957006": TCategory.T1,  # pT1
    "1229852009": TCategory.T2,  # pT2
    "1229859000": TCategory.T3,  # pT3
    "1229864001": TCategory.T4,  # pT4
}
N_VALUES: Final[dict[str, NCategory | None]] = {
    "1229966003": None,  # cNX
    "1229967007": NCategory.N0,  # cN0
    "1229973008": NCategory.N1,  # cN1
    "1229978004": NCategory.N2,  # cN2
    "1229984001": NCategory.N3,  # cN3
    "1229945006": None,  # pNX
    "1229947003": NCategory.N0,  # pN0
    "1229951001": NCategory.N1,  # pN1
    "1229957002": NCategory.N2,  # pN2
    "1229962001": NCategory.N3,  # pN3
}
M_VALUES: Final[dict[str, MCategory | None]] = {
    "1229901006": MCategory.M0,  # cM0
    "1229903009": MCategory.M1,  # cM1
    "1229916009": MCategory.M1,  # pM1
}

LOINC_KARNOFSKY: Final = "89243-0"
LOINC_ECOG: Final = "89247-1"
LOINC_TUMOR_SIZE: Final = "21889-1"
LOINC_TUMOR_SIZE_MAJOR_AXIS: Final = "33728-7"
SNOMED_RT_COURSE_SUMMARY: Final = "1217123003"

# ICD-10(-CM) C11.x = malignant neoplasm of nasopharynx; C77.x = lymph nodes (regional, not M1).
NASOPHARYNX_ICD10_PREFIX: Final = "C11"
LYMPH_NODE_ICD10_PREFIX: Final = "C77"

# ICD-O-3 morphology → WHO type (keratinizing = type 1; non-keratinizing differentiated = type 2;
# undifferentiated / lymphoepithelial = type 3). Other codes leave histology empty.
HISTOLOGY_ICDO3: Final[dict[str, tuple[Histology, bool]]] = {
    "8071/3": (Histology.who_type_1, True),
    "8072/3": (Histology.who_type_2, False),
    "8082/3": (Histology.who_type_3, False),
}

# Radiotherapy: modalities (mcode-radiotherapy-modality) and techniques (…-technique), SNOMED.
# Photons are a modality whose technique (IMRT/VMAT/3D) is what the record wants; protons,
# carbon ions and brachytherapy are modalities in their own right.
RT_TECHNIQUES: Final[dict[str, RtTechnique]] = {
    "441799006": RtTechnique.imrt,
    "1156530009": RtTechnique.vmat,
    "1162782007": RtTechnique.three_d_crt,
}
RT_MODALITIES: Final[dict[str, RtTechnique]] = {
    "10611004": RtTechnique.proton,
    "1156505006": RtTechnique.carbon_ion,
    "394902000": RtTechnique.brachytherapy,  # HDR
    "438629002": RtTechnique.brachytherapy,  # HDR electronic
    "1156708005": RtTechnique.brachytherapy,  # LDR, temporary source
    "1156384006": RtTechnique.brachytherapy,  # pulsed dose rate
    "169359004": RtTechnique.brachytherapy,  # permanent seeds
    "1156506007": RtTechnique.other,  # photons: the technique refines it
    "45643008": RtTechnique.other,  # electrons
    "80347004": RtTechnique.other,  # neutrons
}
PHOTONS: Final = "1156506007"

# Dose units accepted on totalDoseDelivered (UCUM) → factor to Gy.
DOSE_UNITS_TO_GY: Final[dict[str, float]] = {"cGy": 0.01, "Gy": 1.0}

# ---------------------------------------------------------------- restaging (record.restaging)
# Which resources say "MRI / PET-CT / endoscopy / histology of the recurrence was done". Kept short
# on purpose (conservative): a code not listed here leaves the field empty ("not recorded"), which
# the workup rule treats as missing, never as done. Sources, per code:
#   [DICOM-100]  DICOM PS3.16 CID 100 "Quantitative Diagnostic Imaging Procedure"
#   [DICOM-7601] DICOM PS3.16 CID 7601 "Head and Neck Cancer Anatomic Site"
#   [DICOM-BPE]  DICOM PS3.16 Annex L, Body Part Examined → SNOMED CT (HEADNECK, WHOLEBODY)
#   [BE-IMG]     Belgian eHealth eReferral ValueSet be-vs-diagnostic-imaging-procedure (SNOMED CT)
#   [MCODE]      mCODE STU4 (hl7.fhir.us.mcode 4.0.0): mcode-histologic-behavior-and-type profile
#                (Observation.code pattern), mcode-related-condition extension, and the
#                cancer-disease-status evidence-type value set (252416005 Histopathology test)
#   [LOINC]      LOINC radiology / pathology document codes (C-CDA "LOINC Imaging Document Codes",
#                Azure Radiology Insights' LOINC list for 30860-1)
#   [FHIR-R4]    FHIR R4 ImagingStudy: modality codes from DICOM (system DCM), e.g. "CT"
DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"

MRI: Final = "mri"
PET_CT: Final = "pet_ct"
ENDOSCOPY: Final = "endoscopy"
HISTOLOGY: Final = "histology"  # histological confirmation of the recurrence → biopsy_confirmed

# Codes that name the study *and* its region: enough on their own (Procedure.code,
# DiagnosticReport.code, ImagingStudy.procedureCode).
RESTAGING_CODES: Final[dict[tuple[str, str], str]] = {
    (SNOMED, "702725003"): MRI,  # Magnetic resonance imaging of head and neck (procedure) [SNOMED CT, as coded in a
    # public FHIR head-and-neck disease-assessment ActivityDefinition; its MRA siblings 702726002/702727006 are in BE-IMG]
    (LOINC, "30860-1"): MRI,  # MR Nasopharynx [LOINC]
    (SNOMED, "443271005"): PET_CT,  # PET with CT of whole body using FDG (18-F) (procedure) [DICOM-100, BE-IMG]
    (SNOMED, "86273004"): HISTOLOGY,  # Biopsy (procedure): counts only when tied to the recurrence (see mapping)
    (LOINC, "11529-5"): HISTOLOGY,  # Surgical pathology study [LOINC]: idem
}
# Generic codes that need a body site from RESTAGING_SITES (Procedure.bodySite): an MRI of the
# knee is no restaging; a generic endoscopy is read only when it is of the nasopharynx.
SITED_CODES: Final[dict[tuple[str, str], str]] = {
    (SNOMED, "113091000"): MRI,  # Magnetic resonance imaging (procedure)
    (SNOMED, "423827005"): ENDOSCOPY,  # Endoscopy (procedure)
}
NASOPHARYNX_SITE: Final = "71836000"  # Nasopharyngeal structure [DICOM-7601]
HEAD_AND_NECK_SITE: Final = "774007"  # Structure of head and/or neck [DICOM-BPE HEADNECK]
WHOLE_BODY_SITE: Final = "38266002"  # Entire body as a whole [DICOM-BPE WHOLEBODY]
# SNOMED body sites (bodySite / ImagingStudy.series.bodySite) that make a generic study a restaging.
RESTAGING_SITES: Final[dict[str, frozenset[str]]] = {
    MRI: frozenset({NASOPHARYNX_SITE, HEAD_AND_NECK_SITE}),
    PET_CT: frozenset({WHOLE_BODY_SITE}),  # a PET/CT of one region cannot exclude distant disease
    ENDOSCOPY: frozenset({NASOPHARYNX_SITE}),
}
# ImagingStudy modalities [FHIR-R4, DICOM]: MR alone = MRI; PT with CT in one study = PET/CT.
DCM_MR: Final = "MR"
DCM_PET_CT: Final = frozenset({"PT", "CT"})

# mCODE histologic behavior and type (Observation.code pattern, LOINC) [MCODE]; its value is an
# ICD-O-3 morphology/behaviour code: behaviour 3 (malignant, primary site), 6 (malignant,
# metastatic site) or 9 (malignant, uncertain whether primary or metastatic) = carcinoma confirmed.
LOINC_HISTOLOGIC_BEHAVIOR_AND_TYPE: Final = "31206-6"
MALIGNANT_BEHAVIOURS: Final = frozenset({"3", "6", "9"})
RELATED_CONDITION_EXT: Final = MCODE_SD + "mcode-related-condition"
CONDITION_VERIFICATION: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

# Statuses under which a resource says the study/procedure was done and reported.
DONE_STATUSES: Final[dict[str, frozenset[str]]] = {
    "Procedure": frozenset({"completed"}),
    "ImagingStudy": frozenset({"available"}),
    "DiagnosticReport": frozenset({"final", "amended", "corrected", "appended"}),
    "Observation": frozenset({"final", "amended", "corrected"}),
}
