"""Fixtures for the gateway's FHIR / CDS Hooks tests: example Bundles of the project."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from rnpc_devstack.cds_token import issuer_entry, new_private_jwk
from rnpc_shared.devissuer import DevIssuer, ensure_dev_issuer

PROJECT_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = PROJECT_ROOT / "examples" / "fhir"
MCODE_EXAMPLES = Path(__file__).parent / "fixtures" / "mcode-stu4"


def load_example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


CDS_ISSUER = "https://ehr.test/cds-client"


class FhirStub:
    """A tiny real FHIR server on loopback serving fixture resources (reads, patient searches, and
    a Subscription's past events by number through $events, id-only)."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.resources = resources
        self.events: dict[int, str] = {}  # event number → focus reference, for $events
        self.requests: list[tuple[str, str | None]] = []
        self.down = False  # answer every request 503, as a server being restarted does
        self.maintenance = False  # answer every request 200 with an HTML page, as a proxy in front of it may
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                stub.requests.append((self.path, self.headers.get("Authorization")))
                if stub.down:
                    self._send(503, {"resourceType": "OperationOutcome", "issue": []})
                    return
                if stub.maintenance:
                    self._send(200, b"<html><body>Down for maintenance</body></html>", "text/html")
                    return
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")[1:]  # after the "fhir" base segment
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                if parts[-1] == "$events":
                    self._send(200, stub.events_bundle("/".join(parts[:2]), int(params["eventsSinceNumber"]), int(params["eventsUntilNumber"])))
                    return
                if len(parts) == 2:
                    found = [r for r in stub.resources if r["resourceType"] == parts[0] and r["id"] == parts[1]]
                    self._send(200 if found else 404, found[0] if found else {"resourceType": "OperationOutcome", "issue": []})
                    return
                patient = params.get("patient")
                matches = [r for r in stub.resources if r["resourceType"] == parts[0] and (r.get("subject") or {}).get("reference") == f"Patient/{patient}"]
                self._send(200, {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in matches]})

            def _send(self, status: int, body: dict[str, Any] | bytes, content_type: str = "application/fhir+json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events_bundle(self, subscription: str, since: int, until: int) -> dict[str, Any]:
        """The Backport IG's $events answer (R4): a history Bundle, the status Parameters first."""
        events = [(n, focus) for n, focus in sorted(self.events.items()) if since <= n <= until]
        status = {"resourceType": "Parameters", "parameter": [
            {"name": "subscription", "valueReference": {"reference": f"{self.base}/{subscription}"}},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "query-event"},
            *({"name": "notification-event", "part": [
                {"name": "event-number", "valueString": str(n)}, {"name": "focus", "valueReference": {"reference": focus}}]}
              for n, focus in events),
        ]}
        return {"resourceType": "Bundle", "type": "history", "entry": [
            {"fullUrl": "urn:uuid:5b0f6c1e-9d3a-4c7e-8f21-3a6d2e4b7c90", "resource": status}, *({"fullUrl": focus} for _, focus in events)]}

    def __enter__(self) -> FhirStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def bundle_resources(name: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in load_example(name)["entry"]]


@pytest.fixture
def fhir_stub() -> Iterator[FhirStub]:
    with FhirStub(bundle_resources("npc-early-local") + bundle_resources("npc-ecog") + bundle_resources("npc-restaged")) as stub:
        yield stub


@pytest.fixture(scope="session")
def cds_key() -> dict[str, Any]:
    return new_private_jwk("test-key-1")


@pytest.fixture(scope="session")
def dev_issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    """The dev profile's token issuer the in-process gateway trusts (a fresh key pair per run)."""
    return ensure_dev_issuer(tmp_path_factory.mktemp("dev-issuer"))


@pytest.fixture(scope="session")
def auth_headers(dev_issuer: DevIssuer) -> Callable[..., dict[str, str]]:
    """`auth_headers(scopes=None, **mint_options)`: a bearer token header (every user scope by default)."""

    def make(scopes: list[str] | None = None, **options: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {dev_issuer.mint(scopes, **options)}"}

    return make


@pytest.fixture(scope="session")
def migrated_gateway_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gateway's migrations applied once; each test gets a copy of this SQLite file."""
    from rnpc_devstack.stack import migrate

    path = tmp_path_factory.mktemp("gateway-template") / "gateway.db"
    migrate("gateway", f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def gateway(
    tmp_path: Path, fhir_stub: FhirStub, cds_key: dict[str, Any], migrated_gateway_db: Path, dev_issuer: DevIssuer
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The gateway app in-process over a real (migrated) SQLite database; no broker (no relay,
    no consumer): the outbox rows stay in the DB. The dev profile trusts `dev_issuer`: requests
    to /v1 and /fhir/r4 carry its tokens (`auth_headers`); CDS Hooks calls carry the CDS
    client's own JWT. Returns (app, client)."""
    import shutil

    from rnpc_gateway.app import create_app
    from rnpc_gateway.settings import GatewaySettings

    shutil.copy(migrated_gateway_db, tmp_path / "gateway.db")
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps([issuer_entry(CDS_ISSUER, cds_key, ["https://ehr.test/jwks"])]))
    settings = GatewaySettings(
        database_url=url, run_consumer=False, run_relay=False, fhir_server_url=fhir_stub.base,
        cds_trusted_issuers_file=str(issuers), scoring_url="http://127.0.0.1:9", evidence_url="http://127.0.0.1:9",
        recommendation_url="http://127.0.0.1:9", profile="dev", dev_issuer_dir=str(dev_issuer.directory),
        fhir_pending_retry_interval_s=3600,  # retries are driven by the tests (`retry_pending`)
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            yield app, client


def sample_recommendation(recurrence_id: str, version: int = 1) -> dict[str, Any]:
    """A recommendation of the contract's shape (validated by the contract model)."""
    from rnpc_shared.contracts.recommendation import Recommendation

    return Recommendation.model_validate({
        "recurrence_id": recurrence_id, "version": version, "status": "complete",
        "options": [
            {"modality": "enp", "status": "recommended", "rank": 1,
             "reasons": [{"rule": "R1", "text": "rT1-2 resectable local recurrence", "source": "MODELS.md §5"}]},
            {"modality": "reimrt", "status": "consider", "rank": 2,
             "reasons": [{"rule": "R2", "text": "re-irradiation if surgery is declined", "source": "MODELS.md §5"}],
             "schedule": {"total_dose_gy": 60.0, "fractions": 50, "fractions_per_day": 2, "eqd2_gy": 57.5, "alpha_beta_gy": 10.0}},
            {"modality": "carbon_ion", "status": "contraindicated", "rank": 3,
             "reasons": [{"rule": "R3", "text": "not offered here", "source": "context"}]},
        ],
        "required_workup": [], "warnings": ["Interval since RT is short."],
        "versions": {"rules": "r1", "models": "m1", "evidence": "e1"},
        "input_hash": "abc123", "issued_at": "2026-11-20T10:00:00Z",
    }).model_dump(mode="json")


@pytest.fixture
def stored_recommendation(gateway: tuple[Any, httpx.AsyncClient]) -> Any:
    """Store a record version and its recommendation for a patient, as the pipeline would."""
    from datetime import UTC, datetime

    from rnpc_gateway.tables import RecommendationView, RecordVersion

    app, _ = gateway

    async def store(patient_ref: str, recurrence_id: str | None = None) -> str:
        recurrence_id = recurrence_id or f"rec-{patient_ref}"
        from rnpc_gateway.fhir.mapping import map_bundle

        mapped = map_bundle(load_example("npc-early-local")).record.model_dump(mode="json")
        record = {**mapped, "recurrence_id": recurrence_id, "patient_ref": patient_ref}
        recommendation = sample_recommendation(recurrence_id)
        async with app.state.runtime.sessions() as session:
            session.add(RecordVersion(recurrence_id=recurrence_id, version=1, patient_ref=patient_ref, content_hash="h",
                                      record=record, correlation_id="c"))
            view = RecommendationView(recurrence_id=recurrence_id, version=1, status="complete",
                                      rules_version=recommendation["versions"]["rules"],
                                      evidence_version=recommendation["versions"]["evidence"],
                                      body=json.dumps({**recommendation, "added_by_a_later_contract": True}),
                                      issued_at=datetime(2026, 11, 20, 10, tzinfo=UTC))
            session.add(view)
            await session.commit()
            return str(view.id)

    return store
