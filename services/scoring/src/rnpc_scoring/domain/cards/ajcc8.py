"""Card: AJCC/UICC 8th edition stage groups, nasopharynx; rT/rN use the same definitions
(MODELS.md §3, exact)."""

from rnpc_shared.contracts.scores import ModelStatus

MODEL = "ajcc8_stage"
VERSION = "1.1.0"
STATUS = ModelStatus.exact
CITATION = "AJCC Cancer Staging Manual / UICC TNM, 8th edition, nasopharynx (MODELS.md §3)"
REPORTED_OUTCOMES = ()

T_ORDER = ("T0", "T1", "T2", "T3", "T4")
N_ORDER = ("N0", "N1", "N2", "N3")

# Extension flags (record.recurrence.extension) that define each T category, highest first.
# T1 is the remainder: nasopharynx, oropharynx and/or nasal cavity only.
T4_FLAGS = ("intracranial", "cranial_nerves", "hypopharynx", "orbit", "parotid",
            "beyond_lateral_pterygoid")
# The sphenoid sinus is a paranasal sinus.
T3_FLAGS = ("skull_base_bone", "cervical_vertebra", "pterygoid_structures", "paranasal_sinuses",
            "sphenoid_sinus")
# "parapharyngeal" counts when superficial or deep.
T2_FLAGS = ("parapharyngeal", "adjacent_soft_tissue")
T_FLAGS_BY_CATEGORY = (("T4", T4_FLAGS), ("T3", T3_FLAGS), ("T2", T2_FLAGS))

# N3: > 6 cm (strictly) and/or below the caudal border of the cricoid.
N3_NODE_SIZE_ABOVE_CM = 6.0

# Stage groups for M0; any M1 is IVB. T0 N0 M0 has no group (no evidence of tumour).
# I T1N0; II T0–1N1, T2N0–1; III T0–2N2, T3N0–2; IVA T4N0–2 or any T N3; IVB any M1.
STAGE_GROUP_M1 = "IVB"
STAGE_GROUPS_M0: dict[str, dict[str, str | None]] = {
    "T0": {"N0": None, "N1": "II", "N2": "III", "N3": "IVA"},
    "T1": {"N0": "I", "N1": "II", "N2": "III", "N3": "IVA"},
    "T2": {"N0": "II", "N1": "II", "N2": "III", "N3": "IVA"},
    "T3": {"N0": "III", "N1": "III", "N2": "III", "N3": "IVA"},
    "T4": {"N0": "IVA", "N1": "IVA", "N2": "IVA", "N3": "IVA"},
}
# Groups that hold whatever the T category (used when no T is entered, e.g. regional site).
STAGE_GROUP_ANY_T_M0 = {"N3": "IVA"}
