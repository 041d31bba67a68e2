"""Audit trail: who accessed which case (or did what admin action), when, with what outcome.

Rows are appended to a hash chain: `row_hash = sha256(canonical JSON of the row, prev_hash)`.
A write's row is in the write's transaction; a read's row is committed before the response is
sent, so an access whose audit row cannot be written is refused. A row that comes with no write
(a read, a refusal) is committed without waiting for the disk (`GroupCommit`): it survives any
crash of a process, and is flushed within about a second, so only a power loss of the database
host in that second could lose it. `verify` walks the chain.

    python -m rnpc_gateway.audit verify [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, cast

from fastapi import Header, Request, Security
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Integer, String, bindparam, insert, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_gateway.tables import GENESIS_HASH, AuditChainHead, AuditEntry
from rnpc_shared.auth import AuthError, Principal, ScopeGuard
from rnpc_shared.contracts.record import RecurrenceId, canonical_json
from rnpc_shared.db import Deferred, GroupCommit, Job, Prepared, make_engine, make_session_factory, utc_now
from rnpc_shared.logging import correlation_id_var
from rnpc_shared.problems import ProblemError
from rnpc_shared.service import get_runtime

R = TypeVar("R")
PURPOSE_OF_USE_HEADER = "X-Purpose-Of-Use"  # e.g. TREAT (HL7 v3 ActReason), optional
_CASE_ID: TypeAdapter[str] = TypeAdapter(RecurrenceId)  # a refused path's id is recorded only if it is one
HASHED_FIELDS = (
    "seq", "recorded_at", "action", "route", "subject", "client_id", "recurrence_id", "version",
    "status", "detail", "correlation_id", "purpose_of_use", "prev_hash",
)  # fmt: skip


@dataclass(slots=True)
class AuditRow:
    """A row to append, with the columns of `AuditEntry` (the table's ORM class, which costs ~10x
    as much to build: every audited request builds one)."""

    recorded_at: datetime
    action: str
    route: str
    subject: str
    client_id: str | None
    recurrence_id: str | None
    version: int | None
    status: int
    detail: str | None
    correlation_id: str
    purpose_of_use: str | None
    seq: int = 0  # seq, prev_hash and row_hash are set when the row is chained
    prev_hash: str = ""
    row_hash: str = ""


COLUMNS = (*HASHED_FIELDS, "row_hash")


def row_hash(entry: AuditRow | AuditEntry) -> str:
    fields: dict[str, Any] = {name: getattr(entry, name) for name in HASHED_FIELDS}
    fields["recorded_at"] = entry.recorded_at.astimezone(UTC).isoformat()
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


async def append(session: AsyncSession, entry: AuditRow) -> AuditRow:
    """Chain `entry` after the current head, in the caller's transaction (the caller commits)."""
    await (await session.connection()).run_sync(chain, [entry])
    return entry


_HEAD = AuditChainHead.__table__  # type: ignore[attr-defined]
# Prepared: the group commit runs these for every batch of audited reads.
_ADVANCE_HEAD = Prepared(
    update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + bindparam("count", type_=Integer)).returning(_HEAD.c.seq, _HEAD.c.row_hash)
)
_SET_HEAD_HASH = Prepared(update(_HEAD).where(_HEAD.c.id == 1).values(row_hash=bindparam("last_hash", type_=String)))
_INSERT_ENTRIES = Prepared(insert(AuditEntry.__table__), column_keys=COLUMNS)  # type: ignore[attr-defined]


def chain(connection: Connection, entries: list[AuditRow]) -> None:
    """Chain `entries` in order after the current head, in the connection's transaction.

    The head row is updated first: that takes the lock every other appender waits on."""
    [(last_seq, prev_hash)] = _ADVANCE_HEAD.execute(connection, {"count": len(entries)})
    rows = []
    for seq, entry in enumerate(entries, start=last_seq - len(entries) + 1):
        entry.seq, entry.prev_hash = seq, prev_hash
        entry.row_hash = prev_hash = row_hash(entry)
        rows.append({name: getattr(entry, name) for name in COLUMNS})
    _INSERT_ENTRIES.executemany(connection, rows)
    _SET_HEAD_HASH.execute(connection, {"last_hash": prev_hash})


@dataclass
class AuditNote:
    """What the route learns while it works: the version concerned, the outcome in a word."""

    version: int | None = None
    detail: str | None = None
    recurrence_id: str | None = None  # when only the work finds the case (e.g. a CDS Hooks call by patient)


@dataclass
class Auditor:
    """The request's audit context: the caller, the route, the correlation id, the purpose."""

    principal: Principal
    route: str
    purpose_of_use: str | None
    group_commit: GroupCommit | None = None  # for standalone(); access() writes in the caller's session

    @classmethod
    async def of_request(cls, request: Request, principal: Principal, purpose_of_use: str | None) -> Auditor:
        """The auditor of a request: its caller, and its route as `METHOD template` (no ids)."""
        route = f"{request.method} {route_template(request)}"[:255]
        return cls(principal, route, purpose_of_use, (await get_runtime(request)).group_commit)

    def entry(self, action: str, recurrence_id: str | None, version: int | None, status: int, detail: str | None) -> AuditRow:
        return AuditRow(
            recorded_at=utc_now(),
            action=action,
            route=self.route,
            subject=self.principal.subject[:255],
            client_id=(self.principal.client_id or "")[:255] or None,
            recurrence_id=recurrence_id,
            version=version,
            status=status,
            detail=detail[:255] if detail else None,
            correlation_id=correlation_id_var.get() or "",
            purpose_of_use=self.purpose_of_use,
        )

    @asynccontextmanager
    async def access(
        self, session: AsyncSession, action: str, recurrence_id: str | None, *, version: int | None = None, status: int = 200
    ) -> AsyncIterator[AuditNote]:
        """Audit a block that writes: on success its row is committed with the block's writes; on
        failure the writes are rolled back and the failure is recorded instead."""
        note = AuditNote(version=version)
        try:
            yield note
        except Exception as exc:
            await session.rollback()
            await append(session, self._failed(exc, action, note.recurrence_id or recurrence_id, note.version))
            await session.commit()
            raise
        await append(session, self.entry(action, note.recurrence_id or recurrence_id, note.version, status, note.detail))
        await session.commit()

    @asynccontextmanager
    async def standalone(
        self, action: str, recurrence_id: str | None, *, version: int | None = None, with_write: Job | None = None
    ) -> AsyncIterator[AuditNote]:
        """Audit a block that writes nothing of its own (a read, a calculator run): its row (or the
        failure's) is committed before the response, through the group commit that concurrent
        requests share (one commit for many). `with_write` (e.g. a token's single use) commits in
        the same transaction, on success and on failure alike; if it fails, the row is not written
        and its error is raised."""
        note = AuditNote(version=version)
        try:
            yield note
        except Exception as exc:
            await self.record(self._failed(exc, action, note.recurrence_id or recurrence_id, note.version), with_write)
            raise
        await self.record(self.entry(action, note.recurrence_id or recurrence_id, note.version, 200, note.detail), with_write)

    async def write(
        self,
        action: str,
        recurrence_id: str | None,
        write: Callable[[Connection], R],
        *,
        version: int | None,
        status: int,
        detail: Callable[[R], str | None],
    ) -> R:
        """Audit a write made through the group commit: its row commits in the write's transaction
        (shared with concurrent requests' writes: one commit for many); if the write fails, the
        failure's row is committed instead and the error raised. A unique-key race (the same write
        committed concurrently elsewhere) is retried once: the retry reads what the other wrote."""
        group_commit = self._group_commit()
        entry = self.entry(action, recurrence_id, version, status, None)

        def job(connection: Connection) -> Deferred:
            result = write(connection)
            entry.detail = detail(result)
            return Deferred(chain, entry, result)

        try:
            try:
                result = await group_commit.run(job)
            except IntegrityError:
                result = await group_commit.run(job)
        except Exception as exc:
            await self.record(self._failed(exc, action, recurrence_id, version))
            raise
        return cast(R, result)  # the job returns a Deferred; the caller gets its result

    async def read(self, action: str, recurrence_id: str, read: Callable[[Connection], tuple[int, R]]) -> tuple[int, R]:
        """Audit a read made in the same unit of work as its own audit row: one hop to the group
        commit's connection for both, the row (with the version the read found) committed before
        the response. A read refused with a problem (e.g. a 404) has its failure's row committed
        in that unit instead, then the problem is raised; any other failure is recorded as
        `standalone` records one."""
        group_commit = self._group_commit()
        entry = self.entry(action, recurrence_id, None, 200, None)  # here: the request's context (its correlation id)

        def job(connection: Connection) -> Deferred:
            try:
                version, value = read(connection)
            except ProblemError as exc:  # kept inside the unit: the batch's other jobs commit
                entry.status, entry.detail = _outcome(exc)
                return Deferred(chain, entry, exc)
            entry.version = version
            return Deferred(chain, entry, (version, value))

        try:
            result = await group_commit.run(job, durable=False)  # a read: only its audit row is written
        except Exception as exc:
            await self.record(self._failed(exc, action, recurrence_id, None))
            raise
        if isinstance(result, ProblemError):
            raise result
        return cast(tuple[int, R], result)

    async def record(self, entry: AuditRow, with_write: Job | None = None) -> None:
        """Commit one row (and `with_write`, flushed to disk before this returns) through the
        group commit."""
        group_commit = self._group_commit()

        def job(connection: Connection) -> Deferred:
            if with_write is not None:
                with_write(connection)
            return Deferred(chain, entry)  # chained with the batch's other rows: one head update

        await group_commit.run(job, durable=with_write is not None)

    def _group_commit(self) -> GroupCommit:
        if self.group_commit is None:
            raise RuntimeError("an audited write or read needs the runtime's group commit")
        return self.group_commit

    def _failed(self, exc: Exception, action: str, recurrence_id: str | None, version: int | None) -> AuditRow:
        return self.entry(action, recurrence_id, version, *_outcome(exc))


def _outcome(exc: Exception) -> tuple[int, str]:
    """A failure's audited status and detail: the problem's, or 500 and the error's type."""
    if isinstance(exc, ProblemError):
        return exc.status, exc.title[:255]
    return 500, type(exc).__name__


class AuditGuard(ScopeGuard):
    """`require_scope` and the request's `Auditor` in one dependency (one node for FastAPI to
    solve per request: see `ScopeGuard`). Use through `audited`."""

    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        purpose_of_use: Annotated[
            str | None,
            Header(alias=PURPOSE_OF_USE_HEADER, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$", description="Purpose of use, e.g. TREAT"),
        ] = None,
    ) -> Auditor:
        return await Auditor.of_request(request, await super().__call__(request), purpose_of_use)


def audited(scope: str) -> Any:
    """The route's scope and its auditor: `auditor: Annotated[Auditor, audited(SCOPE_...)]`. The
    scope shows in the route's OpenAPI `security` as `require_scope`'s does."""
    return Security(AuditGuard(scope), scopes=[scope])


def route_template(request: Request) -> str:
    """The matched route's template (no ids), else the raw path. Not `request.url`: building that
    URL object cost more than the rest of the auditor."""
    route = request.scope.get("route")
    return route.path if route is not None else request.scope["path"]


def _valid_case_id(value: object) -> str | None:
    try:
        return _CASE_ID.validate_python(value)
    except ValidationError:
        return None


async def audit_refusal(request: Request, exc: Exception) -> JSONResponse:
    """An authenticated caller refused a route for want of a scope (403) attempted an access: it is
    recorded like any other, before the answer. A 401 names nobody verifiable, so it is only
    answered (and counted by the HTTP metrics): recording anonymous probes would let anyone fill
    the trail."""
    assert isinstance(exc, AuthError)  # registered for AuthError only
    if exc.status == 403 and exc.principal is not None:
        case = _valid_case_id(request.path_params.get("recurrence_id"))
        auditor = await Auditor.of_request(request, exc.principal, None)
        await auditor.record(auditor.entry(
            "refused", case, None, 403, "insufficient_scope"
        ))
    return exc.response(instance=request.url.path)


# --- reading, export, verification ----------------------------------------------------------


async def entries(session: AsyncSession, *, recurrence_id: str | None, after_seq: int, limit: int) -> list[AuditEntry]:
    query = select(AuditEntry).where(col(AuditEntry.seq) > after_seq)
    if recurrence_id is not None:
        query = query.where(AuditEntry.recurrence_id == recurrence_id)
    return list((await session.exec(query.order_by(col(AuditEntry.seq)).limit(limit))).all())


def as_json(entry: AuditEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in (*HASHED_FIELDS, "row_hash")}


_FHIR_ACTION = {"read": "R", "create": "C", "execute": "E", "admin": "E", "audit": "R"}
_FHIR_SUBTYPE = {"read": "read", "create": "create", "execute": "operation", "admin": "operation", "audit": "search-type"}


def _fhir_outcome(status: int) -> str:
    # AuditEvent.outcome (R4): 0 success, 4 minor failure (refused request), 8 serious (server error)
    return "0" if status < 400 else ("4" if status < 500 else "8")


def as_fhir(entry: AuditEntry) -> dict[str, Any]:
    """One row as a FHIR R4 AuditEvent."""
    agent: dict[str, Any] = {
        "who": {"identifier": {"value": entry.subject}},
        "requestor": True,
    }
    if entry.client_id:
        agent["altId"] = entry.client_id
    if entry.purpose_of_use:
        agent["purposeOfUse"] = [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": entry.purpose_of_use}]}
        ]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(entry.seq),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": _FHIR_SUBTYPE.get(entry.action, "operation")}],
        "action": _FHIR_ACTION.get(entry.action, "E"),
        "recorded": entry.recorded_at.astimezone(UTC).isoformat(),
        "outcome": _fhir_outcome(entry.status),
        "outcomeDesc": f"HTTP {entry.status}" + (f": {entry.detail}" if entry.detail else ""),
        "agent": [agent],
        "source": {"site": "rnpc-gateway", "observer": {"display": "rnpc-gateway"}},
        "entity": [
            {
                "what": {"identifier": {"system": "urn:rnpc:correlation-id", "value": entry.correlation_id}},
                "description": entry.route,
                "detail": [{"type": "row_hash", "valueString": entry.row_hash}, {"type": "prev_hash", "valueString": entry.prev_hash}],
            }
        ],
    }
    if entry.recurrence_id is not None:
        case: dict[str, Any] = {"what": {"identifier": {"system": "urn:rnpc:recurrence-id", "value": entry.recurrence_id}}}
        if entry.version is not None:
            case["detail"] = [{"type": "version", "valueString": str(entry.version)}]
        event["entity"].insert(0, case)
    return event


def as_fhir_bundle(rows: list[AuditEntry]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(rows),
        "entry": [{"fullUrl": f"urn:rnpc:audit:{row.seq}", "resource": as_fhir(row)} for row in rows],
    }


async def verify(session: AsyncSession) -> list[str]:
    """Every break in the chain: an edited row, a deleted or inserted one, a truncated tail."""
    problems: list[str] = []
    expected_prev, expected_seq = GENESIS_HASH, 1
    rows = (await session.exec(select(AuditEntry).order_by(col(AuditEntry.seq)))).all()
    for row in rows:
        if row.seq != expected_seq:
            problems.append(f"seq {row.seq}: expected seq {expected_seq} (a row is missing)")
        if row.prev_hash != expected_prev:
            problems.append(f"seq {row.seq}: prev_hash does not match the previous row's hash")
        if row_hash(row) != row.row_hash:
            problems.append(f"seq {row.seq}: row_hash does not match its content (the row was edited)")
        expected_prev, expected_seq = row.row_hash, row.seq + 1
    head = await session.get(AuditChainHead, 1)
    if head is None or head.seq != expected_seq - 1 or head.row_hash != expected_prev:
        problems.append("chain head does not match the last row (rows were removed from the end)")
    return problems


async def _verify_database(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        async with make_session_factory(engine)() as session:
            return await verify(session)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="verify the gateway's audit hash chain")
    parser.add_argument("command", choices=["verify"])
    parser.add_argument("--database-url", help="default: GATEWAY_DATABASE_URL")
    args = parser.parse_args(argv)
    if args.database_url is None:
        from rnpc_gateway.settings import GatewaySettings

        args.database_url = GatewaySettings().database_url.get_secret_value()
    problems = asyncio.run(_verify_database(args.database_url))
    for problem in problems:
        print(problem)
    print("audit chain intact" if not problems else f"audit chain BROKEN: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
