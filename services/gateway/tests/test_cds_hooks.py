"""CDS Hooks 2.0: the spec's own JWT/JWKS example as a test vector, the JWT rules over HTTP,
discovery, cards against the spec's rules, order-select, prefetch rules, feedback stored."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlmodel import select

from rnpc_devstack.cds_token import new_private_jwk, sign
from rnpc_devstack.query_plan import sqlite_query_plan
from rnpc_gateway.audit import verify as verify_chain
from rnpc_gateway.cds.cards import card_basis, order_select_cards, patient_view_cards
from rnpc_gateway.cds.routes import PREFETCH
from rnpc_gateway.fhir import store
from rnpc_gateway.cds.jwt_auth import CdsAuthError, TrustedIssuer, verify_cds_jwt
from rnpc_gateway.tables import AuditEntry, CdsFeedback, CdsTokenUse

from .conftest import CDS_ISSUER, FhirStub, sample_recommendation

# The example of the CDS Hooks 2.0 specification (§ Security and Safety, "Example"): header,
# payload, JWK Set and the complete signed JWT, verbatim.
SPEC_JWT = (
    "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImV4YW1wbGUta2lkIiwiamt1IjoiaHR0cHM6Ly9maGlyLWVoci5leGFtcGxlLmNvbS9qd2tfdXJpIn0."
    "eyJpc3MiOiJodHRwczovL2ZoaXItZWhyLmV4YW1wbGUuY29tLyIsInN1YiI6ImNsaWVudF9pZCIsImF1ZCI6Imh0dHBzOi8vY2RzLmV4YW1wbGUub3JnL2Nkcy1zZXJ2aWNl"
    "cy9zb21lLXNlcnZpY2UiLCJleHAiOjE0MjI1Njg4NjAsImlhdCI6MTMxMTI4MDk3MCwianRpIjoiZWUyMmIwMjEtZTFiNy00NjExLWJhNWItOGVlYzZhMzNhYzFlIiwidGVu"
    "YW50IjoiMmRkZDZjM2EtOGU5YS00NGM2LWEzMDUtNTIxMTFhZDMwMmEyIn0."
    "CUFPkplnWd6YGIvzoHolWCQBDsCL8QtTWKGg_QFpS169WrqDGzktRi-_we6-6rVzbjerU27ZKww_SW0-b9RTz-dPJNcqsueMio8r6EqXUXhbLm_ch3XFSbDlGHDl_tqo"
)
SPEC_JWKS = {"keys": [{
    "kty": "EC", "use": "sig", "crv": "P-384", "kid": "example-kid", "alg": "ES384",
    "x": "46SDH7Znh821wblCBglA61sNE9ZrHYKKt3qRtRTmSXyOI_FIGBLWrWa0GPUkDCEk",
    "y": "XMcRuuoGW7CXjQdy-F5i3FeBE0x9hPLdeFdSoDd3ELmx404tLX0VRRcqzAsPhXcI",
}]}
SPEC_ISS = "https://fhir-ehr.example.com/"
SPEC_AUD = "https://cds.example.org/cds-services/some-service"
SPEC_ISSUERS = {SPEC_ISS: TrustedIssuer(SPEC_ISS, SPEC_JWKS, ("https://fhir-ehr.example.com/jwk_uri",))}
PATIENT_VIEW = "http://testserver/cds-services/rnpc-patient-view"


async def _no_fetch(url: str) -> dict[str, Any]:
    raise AssertionError(f"fetched {url}")


async def test_spec_example_jwt_verifies_against_the_spec_jwks_while_valid() -> None:
    # the example was valid between iat (2011) and exp (2015); its lifetime exceeds our 1 h cap
    client = await verify_cds_jwt(SPEC_JWT, audience=SPEC_AUD, issuers=SPEC_ISSUERS, fetch_jwks=_no_fetch, now=1_400_000_000, max_lifetime_s=1e9)
    assert (client.iss, client.jti, client.tenant) == (SPEC_ISS, "ee22b021-e1b7-4611-ba5b-8eec6a33ac1e", "2ddd6c3a-8e9a-44c6-a305-52111ad302a2")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"now": None}, "expired"),  # today: long expired
        ({"now": 1_400_000_000, "audience": "https://cds.example.org/cds-services/other"}, "audience"),
        ({"now": 1_400_000_000, "max_lifetime_s": 3600}, "lifetime"),
        ({"now": 1_400_000_000, "issuers": {}}, "issuer"),
        ({"now": 1_400_000_000, "issuers": {SPEC_ISS: TrustedIssuer(SPEC_ISS, SPEC_JWKS, ())}}, "jku"),  # jku not allowlisted
    ],
)
async def test_spec_example_jwt_is_refused_when_a_rule_fails(kwargs: dict[str, Any], reason: str) -> None:
    args = {"audience": SPEC_AUD, "issuers": SPEC_ISSUERS, "fetch_jwks": _no_fetch, "max_lifetime_s": 1e9, **kwargs}
    with pytest.raises(CdsAuthError) as info:
        await verify_cds_jwt(SPEC_JWT, **args)
    assert info.value.reason == reason


async def test_tampered_spec_example_is_refused() -> None:
    header, payload, signature = SPEC_JWT.split(".")
    tampered = f"{header}.{payload[:-4]}AAAA.{signature}"
    with pytest.raises(CdsAuthError):
        await verify_cds_jwt(tampered, audience=SPEC_AUD, issuers=SPEC_ISSUERS, fetch_jwks=_no_fetch, now=1_400_000_000, max_lifetime_s=1e9)


def _hook(hook: str = "patient-view", patient: str = "pt-cds", **extra: Any) -> dict[str, Any]:
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": {"userId": "Practitioner/1", "patientId": patient},
            "extension": {"com.example.unknown": True}, **extra}


def _auth(key: dict[str, Any], aud: str | list[str] = PATIENT_VIEW, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {sign(key, iss=CDS_ISSUER, aud=aud, **kwargs)}"}


def assert_cards_follow_the_spec(cards: list[dict[str, Any]]) -> None:
    def no_empty(value: Any) -> None:
        assert value is not None and value != [] and value != {} and value != ""
        for child in value.values() if isinstance(value, dict) else value if isinstance(value, list) else []:
            no_empty(child)

    for card in cards:
        no_empty(card)
        assert len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"]
        uuid.UUID(card["uuid"])
        assert all(reason["display"] for reason in card["overrideReasons"])


async def test_discovery_is_open_and_lists_the_services(gateway) -> None:  # noqa: ANN001
    _, client = gateway
    body = (await client.get("/cds-services")).json()
    assert {(s["id"], s["hook"]) for s in body["services"]} == {("rnpc-patient-view", "patient-view"), ("rnpc-order-select", "order-select")}
    assert all(s["prefetch"]["patient"] == "Patient/{{context.patientId}}" for s in body["services"])


async def test_signed_patient_view_gets_cards_from_the_stored_recommendation(gateway, stored_recommendation, cds_key) -> None:  # noqa: ANN001
    app, client = gateway
    await stored_recommendation("pt-cds")
    response = await client.post("/cds-services/rnpc-patient-view", json=_hook(), headers=_auth(cds_key))
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert len(cards) == 1 and cards[0]["summary"] == "rNPC: Endoscopic nasopharyngectomy recommended"
    assert_cards_follow_the_spec(cards)
    # aud as an array holding the exact URL is accepted too
    assert (await client.post("/cds-services/rnpc-patient-view", json=_hook(), headers=_auth(cds_key, aud=[PATIENT_VIEW]))).status_code == 200
    # each call is an access to the case: audited under the CDS client's issuer
    async with app.state.runtime.sessions() as session:
        audited = (await session.exec(select(AuditEntry).where(AuditEntry.route == "POST /cds-services/rnpc-patient-view"))).all()
    assert [(r.subject, r.recurrence_id, r.status) for r in audited] == [(CDS_ISSUER, "rec-pt-cds", 200)] * 2


async def test_more_concurrent_calls_than_pooled_connections_are_all_answered(gateway, stored_recommendation, cds_key) -> None:  # noqa: ANN001
    """Each call holds a pooled connection for its read while it awaits its audit row and token
    spend: the group commit's own connection keeps that from deadlocking on the pool."""
    app, client = gateway
    await stored_recommendation("pt-cds")
    calls = 3 * (app.state.runtime.engine.pool.size() + app.state.runtime.engine.pool._max_overflow)  # noqa: SLF001
    answers = await asyncio.gather(*(
        client.post("/cds-services/rnpc-patient-view", json=_hook(), headers=_auth(cds_key)) for _ in range(calls)
    ))
    assert [a.status_code for a in answers] == [200] * calls
    async with app.state.runtime.sessions() as session:
        audited = (await session.exec(select(AuditEntry).where(AuditEntry.route == "POST /cds-services/rnpc-patient-view"))).all()
        assert await verify_chain(session) == []
    assert len(audited) == calls


def _token(key: dict[str, Any], algorithm: str, signing_key: Any, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": CDS_ISSUER, "aud": PATIENT_VIEW, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(payload, signing_key, algorithm=algorithm, headers={"kid": key["kid"], "typ": "JWT"})


async def test_jwt_rules_over_http(gateway, stored_recommendation, cds_key) -> None:  # noqa: ANN001
    _, client = gateway
    await stored_recommendation("pt-cds")
    url = "/cds-services/rnpc-patient-view"
    replayed = _auth(cds_key, jti="same-jti")
    refused = {
        "missing": {},
        "expired": _auth(cds_key, now=time.time() - 3600, lifetime_s=60),
        "audience": _auth(cds_key, aud="http://testserver/cds-services/rnpc-order-select"),
        "algorithm": {"Authorization": "Bearer " + _token(cds_key, "none", None)},
        "hmac": {"Authorization": "Bearer " + _token(cds_key, "HS256", "a-shared-secret-that-is-long-enough-for-hs256")},
        "other key": _auth(new_private_jwk(cds_key["kid"])),
        "jku": _auth(cds_key, headers={"jku": "https://attacker.test/jwks"}),
    }
    for label, headers in refused.items():
        response = await client.post(url, json=_hook(), headers=headers)
        assert response.status_code == 401, (label, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.post(url, json=_hook(), headers=replayed)).status_code == 200
    again = await client.post(url, json=_hook(), headers=replayed)
    assert again.status_code == 401 and again.json()["reason"] == "replay"


def _b64url(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", [["ES384"], {"alg": "ES384"}, 384, None])
async def test_a_header_alg_that_is_not_a_string_is_401(gateway, alg: Any) -> None:  # noqa: ANN001
    _, client = gateway
    token = f"{_b64url({'alg': alg, 'typ': 'JWT', 'kid': 'k'})}.{_b64url({'iss': CDS_ISSUER})}.c2ln"
    response = await client.post("/cds-services/rnpc-patient-view", json=_hook(), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["reason"] == "algorithm"


async def test_the_aud_is_checked_against_the_configured_public_url_never_the_requests_host(
    gateway, stored_recommendation, cds_key, monkeypatch,  # noqa: ANN001
) -> None:
    """Behind a TLS-terminating ingress the gateway sees http://; a Host header is the caller's to
    set. With GATEWAY_CDS_PUBLIC_BASE_URL the aud is that URL's, whatever the request says."""
    app, client = gateway
    await stored_recommendation("pt-cds")
    monkeypatch.setattr(app.state.runtime.settings, "cds_public_base_url", "https://rnpc.hospital.example")
    url = "/cds-services/rnpc-patient-view"
    public = "https://rnpc.hospital.example/cds-services/rnpc-patient-view"
    accepted = await client.post(url, json=_hook(), headers={**_auth(cds_key, aud=public), "X-Forwarded-Proto": "http"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["cards"][0]["source"]["url"].startswith("https://rnpc.hospital.example/fhir/r4/GuidanceResponse?")
    other = "http://staging.rnpc.example/cds-services/rnpc-patient-view"
    for aud, host in ((PATIENT_VIEW, "testserver"), (other, "staging.rnpc.example")):
        refused = await client.post(url, json=_hook(), headers={**_auth(cds_key, aud=aud), "Host": host})
        assert refused.status_code == 401 and refused.json()["reason"] == "audience", refused.text


async def test_outside_the_dev_profile_without_a_public_url_cds_calls_are_refused_not_checked_against_the_host(
    gateway, stored_recommendation, cds_key, monkeypatch,  # noqa: ANN001
) -> None:
    app, client = gateway
    await stored_recommendation("pt-cds")
    monkeypatch.setattr(app.state.runtime.settings, "profile", "production")  # startup refuses this; a request does too
    response = await client.post("/cds-services/rnpc-patient-view", json=_hook(), headers=_auth(cds_key))
    assert response.status_code == 503, response.text
    assert "GATEWAY_CDS_PUBLIC_BASE_URL" in response.json()["detail"]


def test_outside_the_dev_profile_the_gateway_refuses_to_start_without_its_public_url() -> None:
    from rnpc_gateway.settings import GatewaySettings
    from rnpc_shared.settings import ConfigurationError

    production = {"profile": "production", "auth_issuers": [{"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks"}],
                  "service_token_url": "https://idp.example/token", "service_client_id": "rnpc-gateway", "service_client_secret": "s"}
    with pytest.raises(ConfigurationError, match="GATEWAY_CDS_PUBLIC_BASE_URL"):
        GatewaySettings(**production).check_security()
    GatewaySettings(**production, run_api=False).check_security()  # no API served: no CDS Hooks call to check
    settings = GatewaySettings(**production, cds_public_base_url="https://rnpc.hospital.example/")
    settings.check_security()
    assert settings.cds_public_base_url == "https://rnpc.hospital.example"
    with pytest.raises(ValueError, match="base URL"):
        GatewaySettings(cds_public_base_url="rnpc.hospital.example")


async def test_spent_token_ids_are_dropped_once_expired(gateway, stored_recommendation, cds_key, monkeypatch) -> None:  # noqa: ANN001
    """The replay store stays bounded: now and then a spend also drops the ids past their expiry
    (a replay after exp fails on exp anyway); ids still valid are kept."""
    app, client = gateway
    await stored_recommendation("pt-cds")
    async with app.state.runtime.sessions() as session:
        session.add(CdsTokenUse(issuer=CDS_ISSUER, jti="long-expired", expires_at=datetime.now(UTC) - timedelta(hours=1)))
        await session.commit()
    monkeypatch.setattr("rnpc_gateway.cds.routes.random.random", lambda: 0.0)  # this spend is the one that cleans up
    response = await client.post("/cds-services/rnpc-patient-view", json=_hook(), headers=_auth(cds_key, jti="fresh"))
    assert response.status_code == 200, response.text
    async with app.state.runtime.sessions() as session:
        kept = (await session.exec(select(CdsTokenUse.jti))).all()
    assert kept == ["fresh"]


async def test_a_patients_latest_recommendation_is_read_through_an_index(gateway) -> None:  # noqa: ANN001
    """CDS Hooks (and GuidanceResponse?subject=) read by patient: on the migrated schema that
    read searches an index of the patient's record versions. Without it, it scanned every record
    version of every patient, a cost that grew with the database (15 ms per call at 2,700 cases)."""
    app, _ = gateway
    async with app.state.runtime.engine.connect() as connection:
        plan = await sqlite_query_plan(connection, store.LATEST_BODY_FOR_PATIENT, {"patient_ref": "pt-cds"})
    assert any("record_versions USING COVERING INDEX ix_record_versions_patient" in step for step in plan), plan
    assert not any(step.startswith("SCAN record_versions") for step in plan), plan


async def test_order_select_checks_the_drafted_order(gateway, stored_recommendation, cds_key) -> None:  # noqa: ANN001
    _, client = gateway
    await stored_recommendation("pt-cds")
    orders = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "ServiceRequest", "id": "o1", "status": "draft", "intent": "order", "code": {"text": "Carbon ion re-irradiation nasopharynx"}, "subject": {"reference": "Patient/pt-cds"}}},
        {"resource": {"resourceType": "ServiceRequest", "id": "o2", "status": "draft", "intent": "order", "code": {"text": "Full blood count"}, "subject": {"reference": "Patient/pt-cds"}}},
    ]}
    call = _hook("order-select", selections=None)
    call["context"].update({"draftOrders": orders, "selections": ["ServiceRequest/o1", "ServiceRequest/o2"]})
    response = await client.post("/cds-services/rnpc-order-select", json=call, headers=_auth(cds_key, aud="http://testserver/cds-services/rnpc-order-select"))
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert [c["indicator"] for c in cards] == ["critical"]  # the blood count is not ours to judge
    assert "carbon-ion re-irradiation is contraindicated" in cards[0]["summary"]
    assert_cards_follow_the_spec(cards)


ORDER_SELECT = "http://testserver/cds-services/rnpc-order-select"


async def _audited(app: Any, route: str) -> list[tuple[str | None, int]]:
    async with app.state.runtime.sessions() as session:
        rows = (await session.exec(select(AuditEntry).where(AuditEntry.route == route))).all()
    return [(r.recurrence_id, r.status) for r in rows]


@pytest.mark.parametrize(("context", "field"), [
    ({"draftOrders": [{"resource": {}}]}, "context.draftOrders"),
    ({"draftOrders": {"entry": [{"resource": "ServiceRequest/o1"}]}}, "context.draftOrders.entry.0.resource"),
    ({"draftOrders": {"entry": [{"resource": {"resourceType": "ServiceRequest", "id": "o1", "code": "carbon"}}]}},
     "context.draftOrders.entry.0.resource.code"),
    ({"draftOrders": {"entry": []}, "selections": [{"reference": "ServiceRequest/o1"}]}, "context.selections.0"),
    ({"draftOrders": {"entry": []}, "selections": 5}, "context.selections"),
], ids=["draftOrders_list", "resource_string", "code_string", "selections_objects", "selections_number"])
async def test_order_select_with_an_odd_context_is_400_naming_the_field_and_audited_as_such(
    gateway, stored_recommendation, cds_key, context: dict[str, Any], field: str,  # noqa: ANN001
) -> None:
    app, client = gateway
    await stored_recommendation("pt-cds")
    call = _hook("order-select")
    call["context"].update(context)
    response = await client.post("/cds-services/rnpc-order-select", json=call, headers=_auth(cds_key, aud=ORDER_SELECT))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]], response.json()
    assert await _audited(app, "POST /cds-services/rnpc-order-select") == [(None, 400)]


@pytest.mark.parametrize(("patient", "rule"), [
    ("../../internal/admin?x=", "string_pattern_mismatch"), ("pt cds", "string_pattern_mismatch"), ("x" * 65, "string_pattern_mismatch"),
    (None, "missing"), (7, "string_type"),
])
async def test_a_patient_id_that_is_not_a_fhir_id_is_400_and_audited(gateway, cds_key, patient: Any, rule: str) -> None:  # noqa: ANN001
    app, client = gateway
    call = _hook(patient="pt-cds")
    if patient is None:
        del call["context"]["patientId"]
    else:
        call["context"]["patientId"] = patient
    response = await client.post("/cds-services/rnpc-patient-view", json=call, headers=_auth(cds_key))
    assert response.status_code == 400, response.text
    assert response.json()["errors"] == [{"field": "context.patientId", "rule": rule, "message": response.json()["errors"][0]["message"]}]
    assert await _audited(app, "POST /cds-services/rnpc-patient-view") == [(None, 400)]


async def test_missing_prefetch_without_a_fhir_server_is_412_and_null_means_no_data(gateway, cds_key) -> None:  # noqa: ANN001
    _, client = gateway
    missing = await client.post("/cds-services/rnpc-patient-view", json=_hook(patient="pt-new"), headers=_auth(cds_key))
    assert missing.status_code == 412
    nulls = _hook(patient="pt-new", prefetch=dict.fromkeys(PREFETCH))
    response = await client.post("/cds-services/rnpc-patient-view", json=nulls, headers=_auth(cds_key))
    assert response.status_code == 200 and response.json() == {"cards": []}  # no recurrence: nothing to say


@pytest.mark.parametrize("value", [{"resourceType": "Bundle", "type": "searchset", "entry": 5}, "Condition/1", 5])
async def test_a_malformed_prefetch_value_is_400_naming_the_key(gateway, cds_key, value: Any) -> None:  # noqa: ANN001
    app, client = gateway
    prefetch = {**dict.fromkeys(PREFETCH), "conditions": value}
    response = await client.post("/cds-services/rnpc-patient-view", json=_hook(patient="pt-new", prefetch=prefetch), headers=_auth(cds_key))
    assert response.status_code == 400, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["prefetch.conditions"]
    assert await _audited(app, "POST /cds-services/rnpc-patient-view") == [(None, 400)]


@contextmanager
def _fhir_server(body: bytes, content_type: str = "application/fhir+json", status: int = 200) -> Iterator[tuple[str, list[str]]]:
    """A loopback server answering every GET with `body`: (its base URL, the paths requested)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir", seen
    finally:
        server.shutdown()
        server.server_close()


def _allow_fhir_servers(app: Any, monkeypatch: pytest.MonkeyPatch, *bases: str) -> None:
    """GATEWAY_CDS_FHIR_SERVERS of the running gateway (http:// only because it runs the dev profile)."""
    from rnpc_gateway.settings import GatewaySettings

    monkeypatch.setattr(app.state.runtime.settings, "cds_fhir_servers", GatewaySettings(cds_fhir_servers=list(bases)).cds_fhir_servers)


def _fetching(patient: str, fhir_server: str) -> dict[str, Any]:
    return _hook(patient=patient, fhirServer=fhir_server, fhirAuthorization={"access_token": "ehr-token", "token_type": "Bearer"})


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b"<html>login</html>", "text/html", 200),  # not JSON
    (b'{"resourceType": "Bundle", "type": "searchset", "entry": 5}', "application/fhir+json", 200),
    (b'["not", "a", "resource"]', "application/fhir+json", 200),
    (b"", "text/plain", 302),  # a redirect is not followed
])
async def test_a_fhir_server_answer_that_is_not_a_fhir_resource_is_412(
    gateway, cds_key, monkeypatch, body: bytes, content_type: str, status: int,  # noqa: ANN001
) -> None:
    app, client = gateway
    with _fhir_server(body, content_type, status) as (base, seen):
        _allow_fhir_servers(app, monkeypatch, base)
        response = await client.post("/cds-services/rnpc-patient-view", json=_fetching("pt-new", base), headers=_auth(cds_key))
    assert seen, "the FHIR server was asked"
    assert response.status_code == 412, response.text
    assert response.json()["title"] == "Prefetch unobtainable"
    assert await _audited(app, "POST /cds-services/rnpc-patient-view") == [(None, 412)]


async def test_a_fhir_server_that_is_not_a_url_is_412(gateway, cds_key) -> None:  # noqa: ANN001
    _, client = gateway
    response = await client.post("/cds-services/rnpc-patient-view", json=_fetching("pt-new", "http://[::1"), headers=_auth(cds_key))
    assert response.status_code == 412, response.text


@pytest.mark.parametrize("allowed", [[], ["{base}/r4"], ["http://localhost:1/fhir"]])
@pytest.mark.parametrize("named", ["{base}", "{base}/r4/../admin", "{base}/r4/Patient/x?", "{base}/r4-other", "http://[::1"])
async def test_a_fhir_server_not_allowlisted_is_never_fetched(gateway, cds_key, monkeypatch, allowed: list[str], named: str) -> None:  # noqa: ANN001
    """SSRF: the gateway reads only the FHIR servers the deployment lists, at their exact base."""
    app, client = gateway
    with _fhir_server(b'{"resourceType": "Bundle", "type": "searchset", "entry": []}') as (base, seen):
        _allow_fhir_servers(app, monkeypatch, *(a.format(base=base) for a in allowed))
        response = await client.post("/cds-services/rnpc-patient-view", json=_fetching("pt-new", named.format(base=base)), headers=_auth(cds_key))
    assert response.status_code == 412, response.text
    assert "GATEWAY_CDS_FHIR_SERVERS" in response.json()["detail"]
    assert seen == []
    assert await _audited(app, "POST /cds-services/rnpc-patient-view") == [(None, 412)]


async def test_a_patient_id_is_never_spliced_into_a_fhir_url_unless_a_fhir_id(gateway, cds_key, monkeypatch) -> None:  # noqa: ANN001
    app, client = gateway
    with _fhir_server(b'{"resourceType": "Bundle", "type": "searchset", "entry": []}') as (base, seen):
        _allow_fhir_servers(app, monkeypatch, base)
        response = await client.post("/cds-services/rnpc-patient-view", json=_fetching("../../internal/admin?x=", base), headers=_auth(cds_key))
    assert response.status_code == 400, response.text
    assert seen == []


def test_cds_fhir_servers_are_base_urls_and_https_outside_the_dev_profile() -> None:
    from pydantic import ValidationError

    from rnpc_gateway.settings import GatewaySettings
    from rnpc_shared.settings import ConfigurationError

    production = {"profile": "production", "auth_issuers": [{"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks"}],
                  "service_token_url": "https://idp.example/token", "service_client_id": "rnpc-gateway", "service_client_secret": "s",
                  "cds_public_base_url": "https://rnpc.hospital.example"}
    assert GatewaySettings(cds_fhir_servers=["https://fhir.example.org/r4/"]).cds_fhir_servers == ["https://fhir.example.org/r4"]
    for bad in ("http://[::1", "fhir.example.org/r4", "https://user@fhir.example.org", "https://fhir.example.org/r4?x=1", "ftp://fhir.example.org"):
        with pytest.raises(ValidationError):
            GatewaySettings(cds_fhir_servers=[bad])
    GatewaySettings(**production, cds_fhir_servers=["https://fhir.example.org/r4"]).check_security()
    with pytest.raises(ConfigurationError, match="GATEWAY_CDS_FHIR_SERVERS"):
        GatewaySettings(**production, cds_fhir_servers=["http://fhir.example.org/r4"]).check_security()


async def test_a_missing_prefetch_is_read_from_the_fhir_server(gateway, fhir_stub: FhirStub, cds_key, monkeypatch) -> None:  # noqa: ANN001
    app, client = gateway
    computed: list[bytes] = []

    async def evaluate(upstream: Any, record: bytes) -> tuple[Any, Any, str]:
        computed.append(record)
        return None, None, json.dumps(sample_recommendation("rec-fetched"))

    monkeypatch.setattr("rnpc_gateway.cds.routes.evaluate_chain", evaluate)
    _allow_fhir_servers(app, monkeypatch, fhir_stub.base + "/")
    response = await client.post("/cds-services/rnpc-patient-view", json=_fetching("npc-early-local", fhir_stub.base), headers=_auth(cds_key))
    assert response.status_code == 200, response.text
    assert response.json()["cards"][0]["summary"] == "rNPC: Endoscopic nasopharyngectomy recommended" and computed
    assert sorted(path for path, _ in fhir_stub.requests) == sorted(
        f"/fhir/{template.replace('{{context.patientId}}', 'npc-early-local')}" for template in PREFETCH.values())
    assert {token for _, token in fhir_stub.requests} == {"Bearer ehr-token"}
    assert await _audited(app, "POST /cds-services/rnpc-patient-view") == [("rec-fetched", 200)]


async def test_feedback_is_stored_and_counted(gateway, cds_key) -> None:  # noqa: ANN001
    app, client = gateway
    body = {"feedback": [
        {"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:00:00Z",
         "overrideReason": {"reason": {"code": "patient-preference", "system": "https://rnpc.example/cds/override-reasons"}, "userComment": "declined"}},
        {"card": "11111111-283f-44a0-93ea-547cebab93ed", "outcome": "accepted", "outcomeTimestamp": "2026-11-20T10:01:00Z"},
    ]}
    feedback_url = "http://testserver/cds-services/rnpc-patient-view/feedback"
    assert (await client.post("/cds-services/rnpc-patient-view/feedback", json=body)).status_code == 401
    response = await client.post("/cds-services/rnpc-patient-view/feedback", json=body, headers=_auth(cds_key, aud=feedback_url))
    assert response.status_code == 200, response.text
    async with app.state.runtime.sessions() as session:
        rows = (await session.exec(select(CdsFeedback))).all()
    assert sorted(r.outcome for r in rows) == ["accepted", "overridden"]
    assert next(r for r in rows if r.outcome == "overridden").override_reason["userComment"] == "declined"
    metrics = (await client.get("/metrics")).text
    assert 'rnpc_cds_feedback_total{outcome="overridden",service_id="rnpc-patient-view"} 1.0' in metrics


@pytest.mark.parametrize("timestamp", ["2026-11-20T10:00:00", "2026-11-20", "not a time"])
async def test_feedback_outcome_timestamp_without_an_offset_is_422_naming_the_field(gateway, cds_key, timestamp: str) -> None:  # noqa: ANN001
    app, client = gateway
    body = {"feedback": [{"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "accepted", "outcomeTimestamp": timestamp}]}
    feedback_url = "http://testserver/cds-services/rnpc-patient-view/feedback"
    response = await client.post("/cds-services/rnpc-patient-view/feedback", json=body, headers=_auth(cds_key, aud=feedback_url))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["feedback.0.outcomeTimestamp"]
    async with app.state.runtime.sessions() as session:
        assert (await session.exec(select(CdsFeedback))).all() == []


def test_card_basis_gives_the_cards_of_the_whole_recommendation() -> None:
    body = json.dumps(sample_recommendation("rec-basis"))
    full, basis = json.loads(body), card_basis(body)

    def without_uuid(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in card.items() if k != "uuid"} for card in cards]

    assert without_uuid(patient_view_cards(basis, source_url="https://x")) == without_uuid(patient_view_cards(full, source_url="https://x"))
    orders = [{"resourceType": "ServiceRequest", "code": {"text": f"{name} nasopharynx"}} for name in ("Carbon ion re-irradiation", "Endoscopic nasopharyngectomy")]
    assert len(order_select_cards(full, orders)) == 2
    assert without_uuid(order_select_cards(basis, orders)) == without_uuid(order_select_cards(full, orders))
    assert card_basis(body) is basis  # parsed once per stored body
