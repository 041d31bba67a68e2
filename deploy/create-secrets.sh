#!/usr/bin/env bash
# Creates the Secrets the Kubernetes manifests expect but never contain, with random values:
#   rnpc-db-<service>   kubernetes.io/basic-auth, username = the service's PostgreSQL role;
#                       read by CloudNativePG (managed roles) and by the service.
#   rnpc-gateway-auth   service-client-secret: the gateway's OAuth 2.0 client secret at the
#                       identity provider (GATEWAY_SERVICE_CLIENT_SECRET), issued by the IdP when
#                       the client rnpc-gateway is registered, so it is read from the environment
#                       (RNPC_GATEWAY_CLIENT_SECRET), never generated; fhir-server-token
#                       (GATEWAY_FHIR_SERVER_TOKEN, optional) from RNPC_FHIR_SERVER_TOKEN.
# Existing Secrets are left alone (no silent rotation). Prefer your secret manager (External
# Secrets, Sealed Secrets, Vault) in production; this script documents exactly what is needed.
# The TLS certificate Secret rnpc-gateway-tls comes from cert-manager or your PKI.
#
#   RNPC_GATEWAY_CLIENT_SECRET=... [RNPC_FHIR_SERVER_TOKEN=...] deploy/create-secrets.sh [namespace]
#   (default namespace: rnpc; needs kubectl, openssl). The values are passed to kubectl through
#   file descriptors, never on its command line.
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
elif [[ -z "${RNPC_GATEWAY_CLIENT_SECRET:-}" ]]; then
  echo "secret/rnpc-gateway-auth not created: set RNPC_GATEWAY_CLIENT_SECRET (the client secret" >&2
  echo "the identity provider issued for client rnpc-gateway); the gateway does not start without it" >&2
  exit 1
else
  args=(--from-file=service-client-secret=<(printf '%s' "${RNPC_GATEWAY_CLIENT_SECRET}"))
  if [[ -n "${RNPC_FHIR_SERVER_TOKEN:-}" ]]; then
    args+=(--from-file=fhir-server-token=<(printf '%s' "${RNPC_FHIR_SERVER_TOKEN}"))
  fi
  kubectl -n "${NAMESPACE}" create secret generic rnpc-gateway-auth "${args[@]}"
  kubectl -n "${NAMESPACE}" label secret rnpc-gateway-auth app.kubernetes.io/part-of=rnpc-advisor
fi
