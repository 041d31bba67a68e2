"""Key rotation: an unknown kid re-reads the issuer's JWKS, but no more often than the rate limit; a
withdrawn key stops being honoured within KEY_WITHDRAWAL_S; a JWKS that cannot be read keeps the keys."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from rnpc_shared import auth
from rnpc_shared.auth import AuthError, IssuerConfig, TokenVerifier
from rnpc_shared.devissuer import DEV_ISSUER, GATEWAY_AUDIENCE, ensure_dev_issuer


def _rotate(directory: Path) -> None:
    """A new key pair (and kid) replaces the old one, as an issuer's key rotation does."""
    shutil.rmtree(directory)
    ensure_dev_issuer(directory)


@pytest.mark.parametrize(("min_refresh_s", "accepted"), [(0.0, True), (3600.0, False)])
async def test_rotated_key_is_fetched_on_unknown_kid_within_the_rate_limit(tmp_path: Path, min_refresh_s: float, accepted: bool) -> None:
    issuer = ensure_dev_issuer(tmp_path / "issuer")
    verifier = TokenVerifier(
        [IssuerConfig(issuer=DEV_ISSUER, jwks_uri=issuer.jwks_path.as_uri())], audience=GATEWAY_AUDIENCE, jwks_min_refresh_s=min_refresh_s
    )
    first = await verifier.verify(issuer.mint(["user/Evidence.read"], subject="before"))
    assert first.subject == "before" and first.scopes == frozenset({"user/Evidence.read"})
    _rotate(issuer.directory)
    rotated_token = issuer.mint(subject="after")
    if accepted:
        assert (await verifier.verify(rotated_token)).subject == "after"
    else:
        with pytest.raises(AuthError) as refused:
            await verifier.verify(rotated_token)
        assert refused.value.status == 401 and refused.value.detail == "unknown signing key"


async def test_a_key_withdrawn_from_the_jwks_stops_being_honoured_within_the_documented_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = ensure_dev_issuer(tmp_path / "issuer")
    verifier = TokenVerifier([IssuerConfig(issuer=DEV_ISSUER, jwks_uri=issuer.jwks_path.as_uri())], audience=GATEWAY_AUDIENCE)
    start = time.monotonic()
    now = [start]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    first, late = issuer.mint(subject="first"), issuer.mint(subject="late")
    await verifier.verify(first)  # the JWKS is read now
    issuer.jwks_path.write_text(json.dumps({"keys": []}))  # the issuer withdraws the (compromised) key
    now[0] = start + auth.JWKS_MAX_AGE_S - 1  # the worst case: a token signed with it, first seen just before the re-read
    assert (await verifier.verify(late)).subject == "late"
    now[0] = start + auth.KEY_WITHDRAWAL_S
    with pytest.raises(AuthError) as refused:
        await verifier.verify(late)
    assert refused.value.detail == "unknown signing key"


async def test_the_keys_read_last_are_kept_while_the_jwks_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = ensure_dev_issuer(tmp_path / "issuer")
    verifier = TokenVerifier([IssuerConfig(issuer=DEV_ISSUER, jwks_uri=issuer.jwks_path.as_uri())], audience=GATEWAY_AUDIENCE)
    before, during = issuer.mint(subject="before"), issuer.mint(subject="during")
    await verifier.verify(before)
    issuer.jwks_path.write_text("not json")  # the issuer is down, or answers garbage
    later = time.monotonic() + auth.KEY_WITHDRAWAL_S + 1
    monkeypatch.setattr(auth.time, "monotonic", lambda: later)
    assert (await verifier.verify(during)).subject == "during"
