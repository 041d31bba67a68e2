"""Card: recurrent tumour volume thresholds (MODELS.md §4.4, exact thresholds)."""

from rnpc_shared.contracts.scores import ModelStatus, ReportedOutcome

MODEL = "tumour_volume"
VERSION = "1.1.0"
STATUS = ModelStatus.exact
_HAN = "Han et al. 2012 (seed [20])"
_XIAO = "Xiao et al., PLoS One 2015;10:e0125351"
CITATION = f"{_HAN}: > 38 cm³; {_XIAO}: ≥ 22 cm³ (MODELS.md §4.4)"

LARGE_ABOVE_CM3 = 38.0  # strictly greater than 38 cm³ (seed [20])
INTERMEDIATE_FROM_CM3 = 22.0  # 22 cm³ or more (Xiao 2015)

# Threshold quantities; each reported outcome's group is "<quantity>:met" or "<quantity>:not_met".
HAN_QUANTITY = "gtv_volume_han2012"  # GTV > 38 cm³
XIAO_QUANTITY = "gtv_volume_xiao2015"  # GTV ≥ 22 cm³
# (group, 5-year OS %, source), MODELS.md §4.4.
_OS_5Y = (
    (f"{HAN_QUANTITY}:met", 30.1, _HAN), (f"{HAN_QUANTITY}:not_met", 55.9, _HAN),
    (f"{XIAO_QUANTITY}:met", 20.8, _XIAO), (f"{XIAO_QUANTITY}:not_met", 63.1, _XIAO),
)
REPORTED_OUTCOMES = tuple(
    ReportedOutcome(group=group, label="5-year OS", low=pct, high=pct, unit="%", source=source)
    for group, pct, source in _OS_5Y
)
