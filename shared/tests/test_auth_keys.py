"""Key rotation: an unknown kid re-reads the issuer's JWKS, but no more often than the rate limit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
