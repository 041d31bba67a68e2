#!/usr/bin/env bash
# Creates the Secrets the Kubernetes manifests expect but never contain, with random values:
#   rnpc-db-<service>   kubernetes.io/basic-auth, username = the service's PostgreSQL role;
#                       read by CloudNativePG (managed roles) and by the service.
#   rnpc-gateway-auth   GATEWAY_AUTH_JWT_SECRET (more GATEWAY_AUTH_* keys as the gateway
#                       gains issuer settings: add them with kubectl edit / your secret store).
# Existing Secrets are left alone (no silent rotation). Prefer your secret manager (External
# Secrets, Sealed Secrets, Vault) in production; this script documents exactly what is needed.
# The TLS certificate Secret rnpc-gateway-tls comes from cert-manager or your PKI.
#
#   deploy/create-secrets.sh [namespace]        (default namespace: rnpc; needs kubectl, openssl)
set -euo pipefail

NAMESPACE="${1:-rnpc}"
SERVICES=(gateway scoring evidence recommendation)

exists() { kubectl -n "${NAMESPACE}" get secret "$1" >/dev/null 2>&1; }

# Hex only: the password is spliced into the database URL, so it must be URL-safe.
random_hex() { openssl rand -hex 32; }

for svc in "${SERVICES[@]}"; do
  name="rnpc-db-${svc}"
  if exists "${name}"; then
    echo "secret/${name} exists, left unchanged"
    continue
  fi
  kubectl -n "${NAMESPACE}" create secret generic "${name}" \
    --type=kubernetes.io/basic-auth \
    --from-literal=username="${svc}" \
    --from-literal=password="$(random_hex)"
  # CloudNativePG reloads a managed role's password when a labelled Secret changes.
  kubectl -n "${NAMESPACE}" label secret "${name}" cnpg.io/reload=true app.kubernetes.io/part-of=rnpc-advisor
done

if exists rnpc-gateway-auth; then
  echo "secret/rnpc-gateway-auth exists, left unchanged"
else
  kubectl -n "${NAMESPACE}" create secret generic rnpc-gateway-auth \
    --from-literal=GATEWAY_AUTH_JWT_SECRET="$(random_hex)"
  kubectl -n "${NAMESPACE}" label secret rnpc-gateway-auth app.kubernetes.io/part-of=rnpc-advisor
fi
