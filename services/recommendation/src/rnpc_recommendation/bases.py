"""The evidence bases this service has been announced (rnpc.evidence.base.v1), by version.

A version id names one content for good: a base announced again with another hash is refused
(a provenance error, dead-lettered), and a case's evidence naming a version with another hash
than the stored one is refused too. The announced hash is the producer's (only the evidence
service may write the topic); it pins the version's content between its announcement and the
cases' events, which would otherwise be joined with whatever base is stored.
"""

from __future__ import annotations

from sqlmodel import Session

from rnpc_recommendation.tables import EvidenceBaseRow
from rnpc_shared.contracts.events import EvidenceBaseAnnounced
from rnpc_shared.contracts.evidence import EvidenceBase
from rnpc_shared.contracts.record import read_tolerant
from rnpc_shared.db import serialise
from rnpc_shared.kafka.consumer import ProvenanceError

# Parsed once per (version, hash) in the process: a base never changes under its hash.
_PARSED: dict[tuple[str, str], EvidenceBase] = {}


def store(session: Session, announced: EvidenceBaseAnnounced) -> bool:
    """Keep an announced base; False when it was kept already (an announcement re-sent)."""
    version = announced.base.evidence_version
    lock(session, version)  # then the caller's look for waiting cases sees every one kept so far
    row = session.get(EvidenceBaseRow, version)
    if row is not None:
        _check(version, row.base_hash, announced.base_hash)
        return False
    session.add(EvidenceBaseRow(evidence_version=version, base_hash=announced.base_hash, base=announced.base.model_dump(mode="json")))
    session.flush()  # the batch's next event finds it
    _PARSED[(version, announced.base_hash)] = announced.base
    return True


def find(session: Session, version: str, base_hash: str) -> EvidenceBase | None:
    """The base a case's evidence names, or None while it has not been announced here."""
    if (version, base_hash) in _PARSED:
        return _PARSED[(version, base_hash)]
    lock(session, version)  # a base being stored by another replica is seen once it commits
    row = session.get(EvidenceBaseRow, version)
    if row is None:
        return None
    _check(version, row.base_hash, base_hash)
    base = _PARSED[(version, base_hash)] = read_tolerant(EvidenceBase, row.base)
    return base


def lock(session: Session, version: str) -> None:
    """A case that finds no base keeps its parts to wait for it; a base that arrives looks for the
    cases waiting. On two replicas at once, each would miss the other's write (and the case would
    wait for good): both take this lock before they look."""
    serialise(session.connection(), f"evidence-base:{version}")


def _check(version: str, stored_hash: str, named_hash: str) -> None:
    if stored_hash != named_hash:
        raise ProvenanceError(
            f"evidence base {version} is stored with content {stored_hash[:12]}, "
            f"but this event names content {named_hash[:12]}"
        )
