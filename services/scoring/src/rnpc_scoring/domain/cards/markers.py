"""Card: prognostic markers reported, not scored (MODELS.md §4.7).

Status lookup_only: nothing is computed; each entered marker is shown with the association the
seed reports. No marker is ever used in a decision rule.
"""

from rnpc_shared.contracts.scores import ModelStatus

MODEL = "markers"
VERSION = "1.0.0"
STATUS = ModelStatus.lookup_only
CITATION = "Seed §3: WHO type [21]; plasma EBV DNA [5,22–24]; NLR [25–27]"
REPORTED_OUTCOMES = ()

FAVOURABLE_WHO_TYPE = "who_type_3"
WHO_TYPE_REPORTED = "WHO type III has better LRPFS and OS than types I/II (seed [21])."

EBV_DNA_DETECTABLE_ABOVE_COPIES_PER_ML = 0.0  # detectable = any copies > 0
EBV_DNA_REPORTED = (
    "Detectable plasma EBV DNA after treatment: poor prognosis (seed [5,24]). The seed calls the "
    "prognostic value of pre-treatment EBV DNA in recurrent NPC uncertain (seed [22–24])."
)

NLR_CUT_OFF = 2.29  # low NLR is ≤ 2.29 (seed [27])
NLR_REPORTED = (
    "Seed reports worse survival for NLR ≤ 2.29 than > 2.29 (HR 1.46, 95% CI 1.14–1.85; "
    "552 patients, endemic region; seed [27])."
)
NLR_CHECK_NOTE = (
    "NLR: the direction reported by the seed (low NLR worse) should be checked against the "
    "source [27]; NLR is shown only and never used in a rule."
)
NOT_SCORED_NOTE = "Markers are reported, not scored; none is used in a decision rule."
