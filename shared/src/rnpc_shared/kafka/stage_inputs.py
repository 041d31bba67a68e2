"""Join the small events a stage needs (record, scores, evidence) by their record reference.

Each part is kept in the stage's own database until all parts of one record version, pinned by
the same content hash, are there; then the stage runs once and the parts are deleted. A part
whose content hash differs from a part already kept for the same version is a provenance error
(dead-lettered): results of different record contents are never combined.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from sqlalchemy import delete
from sqlmodel import Session

from rnpc_shared.contracts.events import RecordRef
from rnpc_shared.contracts.record import read_tolerant
from rnpc_shared.db import json_text, of_version, parse_json, version_params
from rnpc_shared.kafka.consumer import ProvenanceError
from rnpc_shared.kafka.tables import StageInput

M = TypeVar("M", bound=BaseModel)


class Parts:
    """The parts of one record version present so far: name → (value, result hash). A part read
    from its event is its validated model; a kept one is read from its row when first asked for."""

    def __init__(self, ref: RecordRef, stored: list[StageInput]) -> None:
        self.ref = ref
        self._stored = {row.part: row for row in stored}
        self._current: dict[str, tuple[BaseModel | dict[str, Any], str | None]] = {}

    def add(self, part: str, value: BaseModel, result_hash: str | None) -> None:
        self._current[part] = (value, result_hash)

    def has(self, *parts: str) -> bool:
        return all(part in self._stored or part in self._current for part in parts)

    def model(self, part: str, model: type[M]) -> M:
        """The part as `model`: the event's own validated value, or the kept one read tolerantly."""
        value = self._entry(part)[0]
        return value if isinstance(value, model) else read_tolerant(model, value)

    def result_hash(self, part: str) -> str | None:
        return self._entry(part)[1]

    def _entry(self, part: str) -> tuple[BaseModel | dict[str, Any], str | None]:
        if part not in self._current:  # read once
            data = parse_json(self._stored[part].data)
            self._current[part] = (data["value"], data.get("result_hash"))
        return self._current[part]

    def new_rows(self) -> list[StageInput]:
        return [
            StageInput(
                recurrence_id=self.ref.recurrence_id,
                version=self.ref.version,
                part=part,
                content_hash=self.ref.content_hash,
                data=json_text({"value": value.model_dump(mode="json") if isinstance(value, BaseModel) else value, "result_hash": result_hash}),
            )
            for part, (value, result_hash) in self._current.items()
            if part not in self._stored
        ]


# Built once, with `of_version`'s criteria. Nothing in the session needs to learn of the deletion
# (the parts were read already), so the ORM does not evaluate it against every object it holds.
_DISCARD = delete(StageInput).where(of_version(StageInput).whereclause).execution_options(synchronize_session=False)


def gather(session: Session, ref: RecordRef, part: str, value: BaseModel, result_hash: str | None = None) -> Parts:
    """The parts kept for `ref`'s version plus this one (not stored yet: see `keep` / `discard`)."""
    stored = list(session.exec(of_version(StageInput), params=version_params(ref.recurrence_id, ref.version)).all())
    for row in stored:
        if row.content_hash != ref.content_hash:
            raise ProvenanceError(
                f"{part} of {ref.recurrence_id} version {ref.version} is for content {ref.content_hash[:12]}, "
                f"but its {row.part} is for content {row.content_hash[:12]}"
            )
    parts = Parts(ref, stored)
    parts.add(part, value, result_hash)
    return parts


def keep(session: Session, parts: Parts) -> None:
    """Not complete yet: store the new part for later."""
    session.add_all(parts.new_rows())


def discard(session: Session, ref: RecordRef) -> None:
    """Complete: the stage ran; its inputs are no longer needed."""
    session.exec(_DISCARD, params=version_params(ref.recurrence_id, ref.version))
