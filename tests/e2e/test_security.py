"""The trust boundary on the real stack: tokens, scopes per route, internal service credentials,
hostile inputs (4xx problem, nothing stored), and the audit trail of a case."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from rnpc_shared.auth import SCOPE_AUDIT_READ, SCOPE_INTERNAL, SCOPES
from rnpc_shared.devissuer import DevIssuer, service_audience, user_scopes

pytestmark = pytest.mark.integration

# Open without a token: probes, metrics (no patient data, only route templates; scraped in-cluster).
# CDS Hooks discovery holds no patient data (real clients call it once without a JWT): open.
PUBLIC_OPERATIONS = {("GET", "/livez"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/cds-services")}
# CDS Hooks service calls authenticate the CDS client by its own signed JWT (tests in
# services/gateway/tests/test_cds_hooks.py), never by a gateway access token.
CDS_JWT_OPERATIONS = {("POST", "/cds-services/{service_id}"), ("POST", "/cds-services/{service_id}/feedback")}
PROBLEM = "application/problem+json"
AuthHeaders = Callable[..., dict[str, str]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def _good_claims() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "urn:rnpc:dev-issuer", "sub": "mallory", "aud": "rnpc-gateway", "scope": " ".join(user_scopes()), "iat": now, "exp": now + 600}


def _alg_none(issuer: DevIssuer) -> str:
    return _unsigned({"alg": "none", "typ": "at+jwt", "kid": issuer.kid}, _good_claims()) + "."


def _hs256_with_public_key(issuer: DevIssuer) -> str:
    """The classic key-confusion forgery: HMAC keyed with the issuer's public key."""
    public_jwk = json.loads(issuer.jwks_path.read_text())["keys"][0]
    public_pem = jwt.PyJWK(public_jwk).key.public_bytes(
        encoding=__import__("cryptography").hazmat.primitives.serialization.Encoding.PEM,
        format=__import__("cryptography").hazmat.primitives.serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    signing_input = _unsigned({"alg": "HS256", "typ": "at+jwt", "kid": issuer.kid}, _good_claims())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def _other_key_same_kid(issuer: DevIssuer) -> str:
    return jwt.encode(_good_claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"typ": "at+jwt", "kid": issuer.kid})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


TOKEN_CASES: list[tuple[str, Callable[[DevIssuer], dict[str, str]], int, str | None]] = [
    ("no token", lambda i: {}, 401, None),
    ("not a JWT", lambda i: _bearer("not-a-token"), 401, "invalid_token"),
    ("expired", lambda i: _bearer(i.mint(claims={"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200, "nbf": int(time.time()) - 7200})), 401, "invalid_token"),
    ("not yet valid", lambda i: _bearer(i.mint(claims={"nbf": int(time.time()) + 3600})), 401, "invalid_token"),
    ("wrong audience", lambda i: _bearer(i.mint(audience="rnpc-scoring")), 401, "invalid_token"),
    ("wrong issuer", lambda i: _bearer(i.mint(claims={"iss": "https://issuer.invalid"})), 401, "invalid_token"),
    ("unknown kid", lambda i: _bearer(i.mint(headers={"kid": "no-such-key"})), 401, "invalid_token"),
    ("alg none", lambda i: _bearer(_alg_none(i)), 401, "invalid_token"),
    ("HS256 signed with the public key", lambda i: _bearer(_hs256_with_public_key(i)), 401, "invalid_token"),
    ("signed by another key under the issuer's kid", lambda i: _bearer(_other_key_same_kid(i)), 401, "invalid_token"),
    ("not an access token (typ)", lambda i: _bearer(i.mint(headers={"typ": "JWT"})), 401, "invalid_token"),
    ("missing scope", lambda i: _bearer(i.mint([s for s in user_scopes() if s != "user/Evidence.read"])), 403, "insufficient_scope"),
    ("good token", lambda i: _bearer(i.mint(["user/Evidence.read"])), 200, None),
]


@pytest.mark.parametrize(("case", "headers", "status", "error"), TOKEN_CASES, ids=[c[0] for c in TOKEN_CASES])
def test_tokens_are_verified(stack, dev_issuer: DevIssuer, case: str, headers, status: int, error: str | None) -> None:  # noqa: ANN001
    response = httpx.get(f"{stack.base()}/v1/evidence/summary", headers=headers(dev_issuer))
    assert response.status_code == status, (case, response.text)
    if status == 200:
        return
    assert response.headers["content-type"] == PROBLEM
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="rnpc"')
    if error is None:
        assert "error=" not in challenge  # RFC 6750 §3.1: no error code when no token was sent
    else:
        assert f'error="{error}"' in challenge
    if status == 403:
        assert 'scope="user/Evidence.read"' in challenge


def _example_request(path: str, method: str, record: dict[str, Any], recurrence_id: str) -> dict[str, Any]:
    """A concrete request for an operation of the table (bodies: the example record)."""
    url = path.replace("{recurrence_id}", recurrence_id)
    body = copy.deepcopy(record) | {"recurrence_id": recurrence_id} if method == "POST" and "admin" not in path else None
    return {"method": method, "url": url, "json": body}


def test_every_route_declares_a_scope_and_each_scope_opens_exactly_its_routes(stack, example_record, auth_headers: AuthHeaders) -> None:  # noqa: ANN001
    from rnpc_shared.auth import declared_scopes

    operations = declared_scopes(httpx.get(f"{stack.base()}/openapi.json").json())
    unscoped = [op for op, scopes in operations.items() if not scopes and op not in PUBLIC_OPERATIONS | CDS_JWT_OPERATIONS]
    assert unscoped == [], f"routes without a declared scope: {unscoped}"
    with httpx.Client(base_url=stack.base(), timeout=60) as client:
        for (method, path), scopes in sorted(operations.items()):
            if (method, path) in PUBLIC_OPERATIONS:
                assert client.request(method, path).status_code == 200
                continue
            if (method, path) in CDS_JWT_OPERATIONS:
                url = path.replace("{service_id}", "rnpc-patient-view")
                assert client.request(method, url, json={}).status_code == 401, (method, path)
                # A gateway access token with every scope is not a CDS client's JWT.
                assert client.request(method, url, json={}, headers=auth_headers()).status_code == 401, (method, path)
                continue
            assert len(scopes) == 1 and scopes[0] in SCOPES, (method, path, scopes)
            request = _example_request(path, method, example_record, f"sec-scope-{abs(hash((method, path))) % 10**8}")
            assert client.request(**request).status_code == 401, (method, path)
            everything_else = [s for s in user_scopes() if s != scopes[0]]
            denied = client.request(**request, headers=auth_headers(everything_else))
            assert denied.status_code == 403, (method, path, denied.text)
            allowed = client.request(**request, headers=auth_headers(scopes))
            assert allowed.status_code not in (401, 403), (method, path, allowed.text)
            assert allowed.status_code < 500, (method, path, allowed.text)


@pytest.mark.parametrize("service", ["scoring", "evidence", "recommendation"])
def test_internal_routes_need_a_service_token_for_their_audience(stack, dev_issuer: DevIssuer, example_record, service: str) -> None:  # noqa: ANN001
    from rnpc_shared.auth import declared_scopes

    base = stack.base(service)
    operations = declared_scopes(httpx.get(f"{base}/openapi.json").json())
    internal = [(m, p) for (m, p) in operations if p.startswith("/internal/")]
    assert internal
    for method, path in internal:
        assert operations[(method, path)] == [SCOPE_INTERNAL], (service, path)
        request = {"method": method, "url": base + path}
        assert httpx.request(**request).status_code == 401
        user_token = dev_issuer.mint(user_scopes())  # the gateway's audience: not valid here
        assert httpx.request(**request, headers=_bearer(user_token)).status_code == 401
        wrong_scope = dev_issuer.mint(user_scopes(), audience=service_audience(service))
        assert httpx.request(**request, headers=_bearer(wrong_scope)).status_code == 403
        service_token = dev_issuer.mint([SCOPE_INTERNAL], audience=service_audience(service), subject="rnpc-gateway")
        assert httpx.request(**request, headers=_bearer(service_token)).status_code not in (401, 403)


# --- hostile inputs: a 4xx problem naming the field and rule, never a 5xx, nothing stored ------


def _record(example_record: dict[str, Any], recurrence_id: str, **changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(example_record) | {"recurrence_id": recurrence_id}
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = record
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return record


HOSTILE_RECORDS: list[tuple[str, dict[str, Any], str, str]] = [
    ("version 2^63", {"version": 2**63}, "version", "less_than_equal"),
    ("version 2^31", {"version": 2**31}, "version", "less_than_equal"),
    ("diagnosed in the year 9999", {"diagnosed_on": "9999-01-01"}, "diagnosed_on", "not_in_future"),
    ("recorded in the year 9999", {"recorded_at": "9999-12-31T00:00:00Z", "diagnosed_on": None}, "recorded_at", "not_in_future"),
    ("MRI in the future", {"restaging__mri_on": "2999-01-01"}, "restaging.mri_on", "not_in_future"),
    ("radiotherapy before birth", {"prior_treatment__rt_end_on": "1950-01-01"}, "prior_treatment.rt_end_on", "not_before_birth"),
    ("recurrence before the radiotherapy", {"prior_treatment__rt_end_on": "2026-11-19"}, "prior_treatment.rt_end_on", "rt_end_before_recurrence"),
]


@pytest.mark.parametrize(("case", "changes", "field", "rule"), HOSTILE_RECORDS, ids=[c[0] for c in HOSTILE_RECORDS])
def test_hostile_record_is_a_problem_and_nothing_is_stored(stack, example_record, case: str, changes: dict[str, Any], field: str, rule: str) -> None:  # noqa: ANN001
    recurrence_id = "sec-hostile-" + re.sub(r"[^a-z0-9]+", "-", case)
    response = httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=_record(example_record, recurrence_id, **changes))
    _assert_problem(response, 422, field, rule)
    assert httpx.get(f"{stack.base()}/v1/recurrences/{recurrence_id}", headers=stack.auth_headers()).status_code == 404


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_numbers_are_refused(stack, example_record, literal: str) -> None:  # noqa: ANN001
    recurrence_id = f"sec-nonfinite-{literal.strip('-').lower()}-{'neg' if literal.startswith('-') else 'pos'}"
    body = json.dumps(_record(example_record, recurrence_id, biomarkers__nlr=12345.5)).replace("12345.5", literal)
    headers = stack.auth_headers() | {"content-type": "application/json"}
    response = httpx.post(f"{stack.base()}/v1/recurrences", headers=headers, content=body)
    _assert_problem(response, 422, "biomarkers.nlr", "finite_number")
    assert httpx.get(f"{stack.base()}/v1/recurrences/{recurrence_id}", headers=stack.auth_headers()).status_code == 404
    inf_query = httpx.get(f"{stack.base()}/v1/evidence/studies", params={"horizon_years": literal}, headers=stack.auth_headers())
    _assert_problem(inf_query, 422, "query.horizon_years", "finite_number")


@pytest.mark.parametrize("recurrence_id", [".", ".."])
def test_dot_segment_ids_are_refused(stack, example_record, recurrence_id: str) -> None:  # noqa: ANN001
    response = httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=_record(example_record, recurrence_id))
    _assert_problem(response, 422, "recurrence_id", "dot_segment")
    encoded = recurrence_id.replace(".", "%2E")  # so no client normalises the path away
    read = httpx.get(f"{stack.base()}/v1/recurrences/{encoded}", headers=stack.auth_headers())
    assert read.status_code in (404, 422) and read.headers["content-type"] == PROBLEM


def test_oversized_query_values_are_refused(stack) -> None:  # noqa: ANN001
    for value in ("1e300", "inf"):
        response = httpx.post(f"{stack.base()}/v1/admin/redrive", params={"older_than_s": value}, headers=stack.auth_headers(["system/Admin.write"]))
        assert response.status_code == 422 and response.headers["content-type"] == PROBLEM, (value, response.text)
    bad_purpose = httpx.get(f"{stack.base()}/v1/audit", headers=stack.auth_headers([SCOPE_AUDIT_READ]) | {"X-Purpose-Of-Use": "TREAT; drop"})
    _assert_problem(bad_purpose, 422, "header.X-Purpose-Of-Use", "string_pattern_mismatch")


def test_malformed_correlation_id_is_replaced(stack, example_record) -> None:  # noqa: ANN001
    for sent in ("x" * 65, "bad id\twith\ncontrol"):
        response = httpx.get(f"{stack.base()}/v1/evidence/summary", headers=stack.auth_headers() | {"X-Correlation-ID": sent.replace("\n", "")})
        assert response.status_code == 200
        assert response.headers["x-correlation-id"] != sent and re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", response.headers["x-correlation-id"])
    record = _record(example_record, "sec-long-correlation")
    stored = httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers() | {"X-Correlation-ID": "c" * 65}, json=record)
    assert stored.status_code == 202, stored.text


def _raw_request(stack, head: bytes, body_chunks: list[bytes]) -> bytes:  # noqa: ANN001
    """Send a request over a plain socket (chunked or slow bodies) and read the response head."""
    with socket.create_connection(("127.0.0.1", stack.ports["gateway"]), timeout=60) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed: read what it said
        received = b""
        while b"\r\n\r\n" not in received:
            part = sock.recv(65536)
            if not part:
                break
            received += part
        return received


def _head(stack, extra: str) -> bytes:  # noqa: ANN001
    token = stack.auth_headers()["Authorization"]
    return (
        f"POST /v1/recurrences HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


@pytest.mark.parametrize("megabytes", [2, 31])
def test_chunked_body_over_the_cap_is_413(stack, megabytes: int) -> None:  # noqa: ANN001
    chunk = b"[" + b"1," * 32767 + b"1"  # 64 KiB of JSON-ish bytes per chunk
    chunks = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(megabytes * 16)] + [b"0\r\n\r\n"]
    response = _raw_request(stack, _head(stack, "Transfer-Encoding: chunked\r\n"), chunks)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"application/problem+json" in response


def test_declared_length_over_the_cap_is_413(stack) -> None:  # noqa: ANN001
    response = httpx.post(
        f"{stack.base()}/v1/recurrences", headers=stack.auth_headers() | {"content-type": "application/json"}, content=b"x" * 2_000_000
    )
    assert response.status_code == 413 and response.headers["content-type"] == PROBLEM


def test_a_body_that_never_finishes_times_out_with_408(stack) -> None:  # noqa: ANN001
    # 10 bytes of a declared 1000 then nothing: the server gives up after its body deadline.
    response = _raw_request(stack, _head(stack, "Content-Length: 1000\r\n"), [b'{"recurren'])
    assert response.startswith(b"HTTP/1.1 408"), response[:200]


def _assert_problem(response: httpx.Response, status: int, field: str, rule: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    errors = response.json()["errors"]
    assert {"field": field, "rule": rule} in [{"field": e["field"], "rule": e["rule"]} for e in errors], errors


# --- audit ---------------------------------------------------------------------------------


def test_the_audit_trail_of_a_case_shows_each_access(stack, example_record, auth_headers: AuthHeaders) -> None:  # noqa: ANN001
    recurrence_id = "sec-audit-1"
    base = stack.base()
    purpose = {"X-Purpose-Of-Use": "TREAT"}
    calls = [
        ("POST /v1/recurrences", httpx.post(f"{base}/v1/recurrences", json=_record(example_record, recurrence_id), headers=auth_headers() | purpose)),
        ("GET /v1/recurrences/{recurrence_id}", httpx.get(f"{base}/v1/recurrences/{recurrence_id}", headers=auth_headers(subject="dr-a"))),
        ("GET /v1/recurrences/{recurrence_id}/recommendation", httpx.get(f"{base}/v1/recurrences/{recurrence_id}/recommendation", headers=auth_headers(subject="dr-b") | purpose)),
        ("GET /v1/recurrences/{recurrence_id}", httpx.get(f"{base}/v1/recurrences/{recurrence_id}", headers=auth_headers(subject="dr-c"))),
    ]
    assert [c[1].status_code for c in calls][:2] == [202, 200]
    denied = httpx.get(f"{base}/v1/audit", params={"recurrence_id": recurrence_id}, headers=auth_headers([s for s in user_scopes() if s != SCOPE_AUDIT_READ]))
    assert denied.status_code == 403
    trail = httpx.get(f"{base}/v1/audit", params={"recurrence_id": recurrence_id}, headers=auth_headers([SCOPE_AUDIT_READ])).json()["entries"]
    assert [(e["route"], e["status"], e["correlation_id"]) for e in trail] == [
        (route, response.status_code, response.headers["x-correlation-id"]) for route, response in calls
    ]
    assert [e["subject"] for e in trail] == ["dev-user", "dr-a", "dr-b", "dr-c"]
    assert [e["purpose_of_use"] for e in trail] == ["TREAT", None, "TREAT", None]
    assert all(e["client_id"] == "rnpc-dev-cli" for e in trail)
    assert [e["version"] for e in trail if e["route"] != calls[2][0]] == [1, 1, 1]
    seqs = [e["seq"] for e in trail]
    assert seqs == sorted(set(seqs)) and all(re.fullmatch(r"[0-9a-f]{64}", e["row_hash"]) for e in trail)
    bundle = httpx.get(f"{base}/v1/audit/fhir", params={"recurrence_id": recurrence_id}, headers=auth_headers([SCOPE_AUDIT_READ])).json()
    # Reading a case's audit trail is itself recorded against the case (the JSON read above).
    assert bundle["resourceType"] == "Bundle" and bundle["total"] == len(trail) + 1
    events = [entry["resource"] for entry in bundle["entry"]]
    assert {event["resourceType"] for event in events} == {"AuditEvent"}
    assert [event["action"] for event in events] == ["C", "R", "R", "R", "R"]
    assert [event["subtype"][0]["code"] for event in events] == ["create", "read", "read", "read", "search-type"]
    assert [event["agent"][0]["who"]["identifier"]["value"] for event in events] == ["dev-user", "dr-a", "dr-b", "dr-c", "dev-user"]
    assert [event["outcome"] for event in events][:2] == ["0", "0"]
    assert all(event["entity"][0]["what"]["identifier"]["value"] == recurrence_id for event in events)


def test_a_refused_ingest_is_audited_with_its_status_and_stores_nothing(stack, example_record, auth_headers: AuthHeaders) -> None:  # noqa: ANN001
    recurrence_id = "sec-audit-refused-1"
    base = stack.base()
    first = httpx.post(f"{base}/v1/recurrences", json=_record(example_record, recurrence_id), headers=auth_headers())
    again = httpx.post(f"{base}/v1/recurrences", json=_record(example_record, recurrence_id), headers=auth_headers())
    changed = httpx.post(f"{base}/v1/recurrences", json=_record(example_record, recurrence_id, patient_ref="someone-else"), headers=auth_headers())
    assert [first.status_code, again.status_code, changed.status_code] == [202, 202, 409]
    assert [first.json()["outcome"], again.json()["outcome"]] == ["new", "duplicate"]
    trail = httpx.get(f"{base}/v1/audit", params={"recurrence_id": recurrence_id}, headers=auth_headers([SCOPE_AUDIT_READ])).json()["entries"]
    assert [(e["action"], e["status"], e["detail"], e["correlation_id"]) for e in trail] == [
        ("create", 202, "new", first.headers["x-correlation-id"]),
        ("create", 202, "duplicate", again.headers["x-correlation-id"]),
        ("create", 409, "Version already recorded", changed.headers["x-correlation-id"]),
    ]
    case = httpx.get(f"{base}/v1/recurrences/{recurrence_id}", headers=auth_headers()).json()
    assert case["latest_version"] == 1 and case["patient_ref"] == example_record["patient_ref"]


def test_admin_actions_are_audited(stack, auth_headers: AuthHeaders) -> None:  # noqa: ANN001
    response = httpx.post(f"{stack.base()}/v1/admin/redrive", params={"older_than_s": 3600}, headers=auth_headers(["system/Admin.write"], subject="ops-1"))
    assert response.status_code == 200
    trail: list[dict[str, Any]] = []
    after_seq = 0
    while page := httpx.get(
        f"{stack.base()}/v1/audit", params={"limit": 1000, "after_seq": after_seq}, headers=auth_headers([SCOPE_AUDIT_READ])
    ).json()["entries"]:
        trail += page
        after_seq = page[-1]["seq"]
        if any(e["correlation_id"] == response.headers["x-correlation-id"] for e in page):
            break
    admin = [e for e in trail if e["route"] == "POST /v1/admin/redrive" and e["correlation_id"] == response.headers["x-correlation-id"]]
    assert [(e["subject"], e["action"], e["recurrence_id"]) for e in admin][:1] == [("ops-1", "admin", None)]
