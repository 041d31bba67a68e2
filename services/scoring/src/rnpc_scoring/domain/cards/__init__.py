"""Model cards: one versioned data module per scored model (ids of the "Scores" contract).

A card holds MODEL, VERSION, STATUS, CITATION, its thresholds/coefficients with provenance, and
REPORTED_OUTCOMES. Compute functions read figures only from here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import ModuleType

from rnpc_shared.contracts.scores import MODEL_IDS

from rnpc_scoring.domain.cards import (
    ajcc8,
    chua2006,
    cumulative_gtv_dose,
    eqd2_planned,
    eqd2_prior,
    interval,
    li2018,
    markers,
    tumour_volume,
    ward2018,
    you2015,
    yu2016,
)

CARDS: dict[str, ModuleType] = {
    card.MODEL: card
    for card in (
        interval, ajcc8, eqd2_prior, eqd2_planned, cumulative_gtv_dose, li2018, ward2018,
        tumour_volume, yu2016, chua2006, you2015, markers,
    )
}
if set(CARDS) != set(MODEL_IDS):
    raise RuntimeError("every contract model id needs exactly one card")

# Bump on any release of the model set; the digest changes whenever any card's version does.
MODELS_RELEASE = "scoring-models/2026.11.1"


def models_version(card_versions: Mapping[str, str]) -> str:
    """Release label plus a digest of every model's card version, in contract order."""
    joined = ";".join(f"{model}={card_versions[model]}" for model in MODEL_IDS)
    return f"{MODELS_RELEASE}+{hashlib.sha256(joined.encode()).hexdigest()[:8]}"


MODELS_VERSION = models_version({model: card.VERSION for model, card in CARDS.items()})
