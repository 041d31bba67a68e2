"""Fixtures for the gateway's FHIR / CDS Hooks tests: example Bundles of the project."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = PROJECT_ROOT / "examples" / "fhir"
MCODE_EXAMPLES = Path(__file__).parent / "fixtures" / "mcode-stu4"


def load_example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())
