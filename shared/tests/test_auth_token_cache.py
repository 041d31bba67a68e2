"""The verified-token cache: a token's signature is checked once per VERIFIED_TOKEN_TTL_S, its
expiry on every call, and the cache is bounded. (Pure unit: the clocks are the module's.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rnpc_shared import auth
from rnpc_shared.auth import AuthError, IssuerConfig, TokenVerifier
from rnpc_shared.devissuer import DEV_ISSUER, GATEWAY_AUDIENCE, DevIssuer, ensure_dev_issuer


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return ensure_dev_issuer(tmp_path / "issuer")


@pytest.fixture
def verifier(issuer: DevIssuer, monkeypatch: pytest.MonkeyPatch) -> tuple[TokenVerifier, list[str]]:
    """A verifier whose signature checks are counted."""
    verifier = TokenVerifier([IssuerConfig(issuer=DEV_ISSUER, jwks_uri=issuer.jwks_path.as_uri())], audience=GATEWAY_AUDIENCE, leeway_s=30)
    checked: list[str] = []
    signed = verifier._verify_signed

    async def counting(token: str) -> auth.Principal:
        checked.append(token)
        return await signed(token)

    monkeypatch.setattr(verifier, "_verify_signed", counting)
    return verifier, checked


async def test_signature_checked_once_per_ttl(verifier: tuple[TokenVerifier, list[str]], issuer: DevIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    check, checked = verifier
    token = issuer.mint(["user/Evidence.read"], subject="clinician")
    first, again = await check.verify(token), await check.verify(token)
    assert first == again and first.subject == "clinician" and len(checked) == 1
    later = time.monotonic() + auth.VERIFIED_TOKEN_TTL_S + 1
    monkeypatch.setattr(auth.time, "monotonic", lambda: later)
    assert (await check.verify(token)).subject == "clinician"
    assert len(checked) == 2


async def test_a_cached_token_still_expires(verifier: tuple[TokenVerifier, list[str]], issuer: DevIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    check, checked = verifier
    token = issuer.mint(ttl_s=120)
    await check.verify(token)
    expired_at = time.time() + 120 + 30 + 1  # past exp and the leeway
    monkeypatch.setattr(auth.time, "time", lambda: expired_at)
    with pytest.raises(AuthError) as refused:
        await check.verify(token)
    assert refused.value.status == 401 and refused.value.detail == "token expired" and len(checked) == 1


async def test_the_cache_is_bounded(verifier: tuple[TokenVerifier, list[str]], issuer: DevIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    check, checked = verifier
    monkeypatch.setattr(auth, "VERIFIED_TOKEN_CACHE_SIZE", 2)
    tokens = [issuer.mint(subject=f"user-{i}") for i in range(3)]
    for token in tokens:
        await check.verify(token)
    await check.verify(tokens[0])  # evicted (oldest): checked again
    await check.verify(tokens[2])  # still cached
    assert checked == [*tokens, tokens[0]]
