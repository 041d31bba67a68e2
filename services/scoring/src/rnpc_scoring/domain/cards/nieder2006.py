"""Card: Nieder 2006 spinal-cord re-irradiation criteria (MODELS.md §2, exact).

A helper criterion, not one of the scored model ids: the record holds no cord dose.
"""

VERSION = "1.0.0"
CITATION = "Nieder C et al., Int J Radiat Oncol Biol Phys 2006;66:1446 (MODELS.md §2)"

# Gy₂ means BED computed at α/β = 2 Gy; the thresholds below are defined in that unit.
ALPHA_BETA_GY = 2.0
MAX_CUMULATIVE_BED_GY2 = 135.5  # cumulative BED ≤ 135.5 Gy₂ (MODELS.md §2)
MAX_COURSE_BED_GY2 = 98.0  # each course ≤ 98 Gy₂ (MODELS.md §2)
MIN_INTERVAL_MONTHS = 6  # interval ≥ 6 months (MODELS.md §2)
