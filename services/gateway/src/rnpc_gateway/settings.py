from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from rnpc_shared.settings import ConfigurationError, ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    port: int = 8000
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///./.var/gateway.db")  # may hold a password: never logged
    scoring_url: str = "http://127.0.0.1:8001"
    evidence_url: str = "http://127.0.0.1:8002"
    recommendation_url: str = "http://127.0.0.1:8003"
    upstream_timeout_s: float = Field(default=10.0, gt=0)
    # POST /v1/evaluate runs three upstream computations per call: past this many at once it
    # answers 503 + Retry-After rather than queueing until every caller times out.
    evaluate_max_concurrency: int = Field(default=8, ge=1)
    evaluate_retry_after_s: int = Field(default=1, ge=1)
    # Re-drive: a latest record version with no recommendation after this long is sent again,
    # so even a broker that lost its data (the embedded one keeps it in memory) loses no case.
    redrive_after_s: float = Field(default=300.0, gt=0)
    redrive_interval_s: float = Field(default=60.0, gt=0)
    redrive_max_attempts: int = Field(default=5, ge=1)
    # Service credential for the internal services (OAuth 2.0 client credentials). In the dev
    # profile the gateway mints its service tokens with the dev issuer instead.
    service_token_url: str | None = None
    service_client_id: str | None = None
    service_client_secret: SecretStr | None = None
    service_token_ttl_s: int = Field(default=300, ge=30, le=3600)  # dev-minted service tokens

    def check_security(self) -> None:
        super().check_security()
        if self.profile != "dev" and not (self.service_token_url and self.service_client_id and self.service_client_secret):
            raise ConfigurationError(
                "outside the dev profile the gateway needs GATEWAY_SERVICE_TOKEN_URL, _SERVICE_CLIENT_ID and "
                "_SERVICE_CLIENT_SECRET to call the internal services"
            )
        if self.profile != "dev" and self.run_api and not self.cds_public_base_url:
            raise ConfigurationError(
                "outside the dev profile the gateway needs GATEWAY_CDS_PUBLIC_BASE_URL, the public URL EHRs call "
                "(e.g. https://rnpc.hospital.example): a CDS Hooks JWT's aud is checked against it, never against the request's Host"
            )
        if self.profile != "dev" and any(not url.startswith("https://") for url in self.cds_fhir_servers):
            raise ConfigurationError("outside the dev profile every GATEWAY_CDS_FHIR_SERVERS entry must be https://")

    @field_validator("cds_fhir_servers")
    @classmethod
    def _base_urls(cls, urls: list[str]) -> list[str]:
        return [_base_url(url) for url in urls]

    @field_validator("cds_public_base_url")
    @classmethod
    def _public_base_url(cls, url: str | None) -> str | None:
        return _base_url(url) if url else None

    # --- EHR integration (FHIR R4 / mCODE, Subscriptions, CDS Hooks) ---
    # FHIR server for `id-only` Subscription notifications (and CDS prefetch gaps); None = none.
    fhir_server_url: str | None = None
    fhir_server_token: SecretStr | None = Field(default=None, description="Bearer token for fhir_server_url (system scope); never logged")
    fhir_fetch_timeout_s: float = Field(default=10.0, gt=0)
    # Missed Subscription events are read back from fhir_server_url with $events, while the
    # notification that revealed them waits: at most this many per range (more: reported, not read).
    fhir_events_recovery_max: int = Field(default=20, ge=1, le=1000)
    # Events known and not ingested (FHIR server down, too many, not returned) are kept in
    # fhir_pending_events and retried every interval, backing off from backoff_s to backoff_max_s.
    # A gap wider than fhir_events_backfill_max (a counter jump, not missed traffic) is kept for an
    # operator instead of being read back in parts.
    fhir_pending_retry_interval_s: float = Field(default=15.0, gt=0)
    fhir_pending_backoff_s: float = Field(default=30.0, gt=0)
    fhir_pending_backoff_max_s: float = Field(default=3600.0, gt=0)
    fhir_events_backfill_max: int = Field(default=1000, ge=1, le=100_000)
    fhir_source_system: str = "fhir"
    # CDS Hooks client trust: a JSON file [{"iss": ..., "jwks": {"keys": [...]}, "jku": [allowed urls]}].
    # `make cds-token` writes a local development issuer here. No file = no trusted client.
    cds_trusted_issuers_file: str = "./.var/cds-dev/trusted-issuers.json"
    # The public base URL EHRs call (the JWT `aud` must be the exact URL called); None = the request's URL.
    cds_public_base_url: str | None = None
    # FHIR servers a CDS Hooks call's `fhirServer` may name, to read a prefetch key the EHR did not
    # send (with the call's fhirAuthorization): a JSON list of base URLs, matched exactly (a
    # trailing "/" aside), https:// outside the dev profile. Empty = never read: every call must
    # carry its whole prefetch, else 412. The gateway never fetches a URL a client chose.
    cds_fhir_servers: list[str] = Field(default_factory=list)
    cds_jwt_leeway_s: float = Field(default=30.0, ge=0)
    cds_jwt_max_lifetime_s: float = Field(default=3600.0, gt=0, description="exp - iat longer than this is refused")


def _base_url(url: str) -> str:
    """An http(s) base URL (no credentials, query or fragment), without its trailing "/"."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query or parts.fragment:
        raise ValueError(f"{url!r} is not a base URL (http[s]://host[:port][/path])")
    return url.rstrip("/")
