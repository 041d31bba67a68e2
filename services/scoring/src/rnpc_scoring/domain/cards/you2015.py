"""Card: surgical staging of recurrent NPC, You 2015 (MODELS.md §4.3, LOOKUP ONLY).

The stage definitions are not published in our sources: the clinician enters the stage and
the outcomes are looked up.
"""

from rnpc_shared.contracts.scores import ModelStatus, ReportedOutcome

MODEL = "surgical_stage"
VERSION = "1.1.0"
STATUS = ModelStatus.lookup_only
CITATION = "You R et al., Eur J Cancer 2015;51:1771 (seed [30])"

STAGE_NAMES = {"I": "minimal", "II": "limited", "III": "extensive", "IV": "disseminated"}
_OS_5Y_PCT = {"I": 72.0, "II": 55.1, "III": 21.1, "IV": 10.1}  # seed §4, [30]
REPORTED_OUTCOMES = tuple(
    ReportedOutcome(group=f"stage_{stage}", label="5-year OS", low=pct, high=pct, unit="%",
                    source="seed §4 (You 2015, [30])")
    for stage, pct in _OS_5Y_PCT.items()
)
STAGE_NOTES = {
    "I": "ENP favourable in surgical stages I–II (MODELS.md §4.3).",
    "II": "ENP favourable in surgical stages I–II (MODELS.md §4.3).",
    "III": "IMRT in surgical stage III (MODELS.md §4.3).",
}
