"""Join the small events a stage needs (record, scores, evidence) by their record reference.

Each part is kept in the stage's own database until all parts of one record version, pinned by
the same content hash, are there; then the stage runs once and the parts are deleted. A part
whose content hash differs from a part already kept for the same version is a provenance error
(dead-lettered): results of different record contents are never combined.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel

from sqlalchemy import Row, bindparam, delete, insert, select
from sqlmodel import Session

from rnpc_shared.contracts.events import RecordRef
from rnpc_shared.contracts.record import read_tolerant
from rnpc_shared.db import json_text, of_version, parse_json, serialise, utc_now, version_params
from rnpc_shared.kafka.consumer import ProvenanceError
from rnpc_shared.kafka.tables import STAGE_INPUT_TABLE, StageInput

M = TypeVar("M", bound=BaseModel)


class _Part(NamedTuple):
    value: BaseModel | dict[str, Any]
    result_hash: str | None
    correlation_id: str | None  # of the event that brought it (the case's, end to end)


class Parts:
    """The parts of one record version present so far, by name. A part read from its event is
    its validated model; a kept one is read from its row when first asked for."""

    def __init__(self, ref: RecordRef, stored: list[Row[str, str, str]]) -> None:
        self.ref = ref
        self._stored = {row.part: row for row in stored}
        self._current: dict[str, _Part] = {}

    def add(self, part: str, value: BaseModel, result_hash: str | None, correlation_id: str | None = None) -> None:
        self._current[part] = _Part(value, result_hash, correlation_id)

    def has(self, *parts: str) -> bool:
        return all(part in self._stored or part in self._current for part in parts)

    def model(self, part: str, model: type[M]) -> M:
        """The part as `model`: the event's own validated value, or the kept one read tolerantly."""
        value = self._entry(part)[0]
        return value if isinstance(value, model) else read_tolerant(model, value)

    def result_hash(self, part: str) -> str | None:
        return self._entry(part).result_hash

    def correlation_id(self, part: str) -> str | None:
        """The correlation id of the event that brought `part` (None for parts kept before it was)."""
        return self._entry(part).correlation_id

    def _entry(self, part: str) -> _Part:
        if part not in self._current:  # read once
            data = parse_json(self._stored[part].data)
            self._current[part] = _Part(data["value"], data.get("result_hash"), data.get("correlation_id"))
        return self._current[part]

    def new_rows(self) -> list[dict[str, Any]]:
        received_at = utc_now()
        return [
            {
                "recurrence_id": self.ref.recurrence_id,
                "version": self.ref.version,
                "part": part,
                "content_hash": self.ref.content_hash,
                "data": _part_text(entry),
                "received_at": received_at,
            }
            for part, entry in self._current.items()
            if part not in self._stored
        ]


def _part_text(part: _Part) -> str:
    """{"value": …, "result_hash": …, "correlation_id": …} as JSON text; a model is serialised in
    one pass (not to plain values first and then to text)."""
    value = part.value
    value_text = value.model_dump_json() if isinstance(value, BaseModel) else json_text(value)
    return (
        f'{{"value":{value_text},"result_hash":{json_text(part.result_hash)},'
        f'"correlation_id":{json_text(part.correlation_id)}}}'
    )


# Parts are never ORM objects: Core statements on the session's connection, built once. They run
# in the unit's transaction without the ORM's per-statement work (autoflush, identity map, entity
# loading), which cost several times the statement; nothing else in the session reads this table.
_T = STAGE_INPUT_TABLE
_OF_VERSION = of_version(StageInput).whereclause  # with `version_params`
_READ = select(_T.c.part, _T.c.content_hash, _T.c.data).where(_OF_VERSION)
_READ_NAMED = _READ.where(_T.c.part.startswith(bindparam("prefix")))
_WITH_PART = select(_T.c.recurrence_id, _T.c.version, _T.c.content_hash).where(_T.c.part == bindparam("part"))
_KEEP = insert(_T)
_DISCARD = delete(_T).where(_OF_VERSION)
_DROP = _DISCARD.where(_T.c.part.in_(bindparam("parts", expanding=True)))


def gather(
    session: Session,
    ref: RecordRef,
    part: str,
    value: BaseModel,
    result_hash: str | None = None,
    *,
    correlation_id: str | None = None,
) -> Parts:
    """The parts kept for `ref`'s version plus this one (not stored yet: see `keep` / `discard`).
    Joins of one version run one at a time across replicas (`lock`), so the last part's
    transaction always sees the others."""
    lock(session, ref)
    parts = kept(session, ref, arriving=part)
    parts.add(part, value, result_hash, correlation_id)
    return parts


def lock(session: Session, ref: RecordRef) -> None:
    """Wait for any other transaction joining `ref`'s version to commit (see `db.serialise`)."""
    serialise(session.connection(), f"stage-join:{ref.recurrence_id}:{ref.version}")


def kept(session: Session, ref: RecordRef, *, arriving: str = "a part") -> Parts:
    """The parts kept for `ref`'s version; all must be for `ref`'s content (else a provenance error
    naming the `arriving` part)."""
    stored = list(session.connection().execute(_READ, version_params(ref.recurrence_id, ref.version)))
    for row in stored:
        if row.content_hash != ref.content_hash:
            raise ProvenanceError(
                f"{arriving} of {ref.recurrence_id} version {ref.version} is for content {ref.content_hash[:12]}, "
                f"but its {row.part} is for content {row.content_hash[:12]}"
            )
    return Parts(ref, stored)


def refs_with(session: Session, part: str) -> list[RecordRef]:
    """The record versions that have a part named `part` kept (waiting for another part, or for
    something the stage needs besides its parts)."""
    return [
        RecordRef.model_construct(recurrence_id=row.recurrence_id, version=row.version, content_hash=row.content_hash)
        for row in session.connection().execute(_WITH_PART, {"part": part})
    ]


def keep(session: Session, parts: Parts) -> None:
    """Not complete yet: store the new part for later."""
    rows = parts.new_rows()
    if rows:  # a part seen before (a re-drive re-sends it) is kept once; no rows, no statement
        session.connection().execute(_KEEP, rows)


def discard(session: Session, ref: RecordRef) -> None:
    """Complete: the stage ran; its inputs are no longer needed."""
    session.connection().execute(_DISCARD, version_params(ref.recurrence_id, ref.version))


def hold(session: Session, ref: RecordRef, part: str, data: str) -> None:
    """Keep one named part as JSON text until `take` asks for it; a second copy is ignored."""
    params = version_params(ref.recurrence_id, ref.version)
    if not any(row.part == part for row in session.connection().execute(_READ, params)):
        row = params | {"part": part, "content_hash": ref.content_hash, "data": data, "received_at": utc_now()}
        session.connection().execute(_KEEP, [row])


def take(session: Session, ref: RecordRef, prefix: str) -> list[Row[str, str, str]]:
    """The parts of `ref`'s version named `prefix`…, removed from the table (one statement when
    there are none, the usual case)."""
    params = version_params(ref.recurrence_id, ref.version)
    rows = list(session.connection().execute(_READ_NAMED, params | {"prefix": prefix}))
    if rows:
        session.connection().execute(_DROP, params | {"parts": [row.part for row in rows]})
    return rows
