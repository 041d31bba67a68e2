"""Fixtures: the seed review and MODELS.md (copies in reference/), and the example record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]  # tests -> evidence -> services -> repo
SEED_PATH = REPO_ROOT / "reference" / "seed" / "000_f00f3a57341351df.txt"
MODELS_PATH = REPO_ROOT / "reference" / "clinical" / "MODELS.md"
EXAMPLE_PATH = REPO_ROOT / "examples" / "recurrence_record.example.json"


def _read(path: Path) -> str:
    if not path.is_file():
        pytest.fail(
            f"{path} not found: these tests check the evidence against the seed review, copied "
            f"into the repository ({REPO_ROOT}/reference)."
        )
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def seed_text() -> str:
    return _read(SEED_PATH)


@pytest.fixture(scope="session")
def quotable_text(seed_text: str) -> str:
    """Seed plus MODELS.md, whitespace-normalised: every quoted passage in a note must be in here."""
    return " ".join(seed_text.split()) + "\n" + " ".join(_read(MODELS_PATH).split())


@pytest.fixture
def example_record_json() -> dict:
    """The contract's complete example record (a local rT2 case), as plain JSON."""
    return json.loads(_read(EXAMPLE_PATH))
