"""`make token`: print a bearer token from the dev profile's local issuer (.var/dev-issuer/)."""

from __future__ import annotations

import argparse

from rnpc_devstack.stack import repo_root
from rnpc_shared.auth import SCOPES
from rnpc_shared.devissuer import DEFAULT_TTL_S, GATEWAY_AUDIENCE, ensure_dev_issuer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="dev-profile token issuer")
    parser.add_argument("command", choices=["token"])
    parser.add_argument("--scopes", default="", help="space-separated scopes (default: every user scope)")
    parser.add_argument("--audience", default=GATEWAY_AUDIENCE)
    parser.add_argument("--ttl-s", type=int, default=DEFAULT_TTL_S)
    args = parser.parse_args(argv)
    issuer = ensure_dev_issuer(repo_root() / ".var" / "dev-issuer")
    scopes = args.scopes.split() or None
    unknown = [s for s in scopes or [] if s not in SCOPES]
    if unknown:
        parser.error(f"unknown scopes {unknown}; known: {' '.join(SCOPES)}")
    print(issuer.mint(scopes, audience=args.audience, ttl_s=args.ttl_s))


if __name__ == "__main__":
    main()
