"""Settings base: one BaseSettings per service with its own env prefix (e.g. SCORING_DATABASE_URL)."""

from __future__ import annotations

import ipaddress
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rnpc_shared.auth import IssuerConfig

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class ConfigurationError(RuntimeError):
    """The service refuses to start with this configuration."""


DEV_ISSUER = "urn:rnpc:dev-issuer"  # the dev profile's local issuer (rnpc_shared.devissuer)


class ServiceSettings(BaseSettings):
    """Common runtime settings; a service subclasses it with its env prefix and defaults."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "service"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///./.var/service.db")  # may hold a password: never logged
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # The embedded broker is unauthenticated on loopback; production (Strimzi) authenticates each
    # service as its own principal (SASL/SCRAM), whose ACLs allow only the topics it owns or reads.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None  # never logged: SecretStr renders as '**********'
    kafka_ssl_cafile: str | None = None  # CA bundle for SSL/SASL_SSL (e.g. the Strimzi cluster CA)
    # Tansu does not wake a fetch on new data, so a low wait keeps latency low there; Apache Kafka
    # wakes fetches on data, so its default (500) is right in production.
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=1, le=10_000)
    kafka_send_timeout_s: float = Field(default=10.0, gt=0)
    kafka_request_timeout_ms: int = Field(default=30_000, ge=1000)
    consumer_group: str | None = None
    run_api: bool = True
    run_consumer: bool = True
    run_relay: bool = True
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=100, ge=1)
    # A row that fails this many sends (while others go through) is parked with its reason.
    outbox_max_attempts: int = Field(default=10, ge=1)
    # The broker's message size limit (Kafka's message.max.bytes / max.request.size, 1 MB by
    # default): a bigger event can never be sent, so it is parked at once and refused at ingest.
    kafka_max_message_bytes: int = Field(default=1_048_576, ge=1024)
    # /readyz reports the outbox stuck when its oldest pending row is older than this.
    outbox_stuck_after_s: float = Field(default=120.0, gt=0)
    # Gauges (backlog, table sizes) and retention run on this timer, not on every relay pass.
    housekeeping_interval_s: float = Field(default=10.0, gt=0)
    # Retention: published/parked outbox rows and inbox rows older than this are deleted. The
    # inbox window must outlast any redelivery (uncommitted offsets, a re-drive, a DLQ replay of
    # recent messages); effects are idempotent per record version beyond it anyway.
    outbox_retention_s: float = Field(default=3600.0, gt=0)
    inbox_retention_s: float = Field(default=86_400.0, gt=0)
    retention_batch_rows: int = Field(default=5000, ge=1)
    consumer_max_batch: int = Field(default=200, ge=1)
    handler_max_attempts: int = Field(default=3, ge=1)
    retry_backoff_s: float = Field(default=0.2, ge=0)
    liveness_poll_stale_s: float = Field(default=60.0, gt=0)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    body_timeout_s: float = Field(default=10.0, gt=0, le=300)  # a slower request body gets 408
    # Security profile: "production" (the default) trusts only configured issuers; "dev" (make run,
    # tests) also trusts the local dev issuer in `dev_issuer_dir` and binds to loopback only.
    profile: Literal["dev", "production"] = "production"
    auth_issuers: list[IssuerConfig] = Field(default_factory=list)  # JSON: [{"issuer", "jwks_uri"}]
    auth_audience: str | None = None  # default rnpc-<service>
    auth_clock_skew_s: float = Field(default=30.0, ge=0, le=300)
    auth_token_url: str | None = None  # the issuer's token endpoint, shown in the OpenAPI document
    dev_issuer_dir: str | None = None

    @property
    def audience(self) -> str:
        return self.auth_audience or f"rnpc-{self.service_name}"

    def trusted_issuers(self) -> list[IssuerConfig]:
        issuers = list(self.auth_issuers)
        if self.dev_issuer_dir:
            from pathlib import Path

            jwks = (Path(self.dev_issuer_dir) / "jwks.json").resolve()
            issuers.append(IssuerConfig(issuer=DEV_ISSUER, jwks_uri=jwks.as_uri()))
        return issuers

    def check_security(self) -> None:
        """Refuse to start when insecure: the dev issuer outside dev, or no issuer at all."""
        if self.profile != "dev":
            if self.dev_issuer_dir or any(i.issuer == DEV_ISSUER for i in self.auth_issuers):
                raise ConfigurationError("the dev token issuer is refused outside the dev profile")
            if any(not i.jwks_uri.startswith("https://") for i in self.auth_issuers):
                raise ConfigurationError("outside the dev profile every issuer's jwks_uri must be https://")
        elif not _is_loopback(self.host):
            raise ConfigurationError(f"the dev profile binds to loopback only, not {self.host}")
        if not self.trusted_issuers():
            raise ConfigurationError(
                "no token issuer configured: set <SERVICE>_AUTH_ISSUERS (or the dev profile's DEV_ISSUER_DIR)"
            )

    @model_validator(mode="after")
    def _sasl_complete(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL_"):
            for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"):
                if not getattr(self, name):
                    raise ValueError(f"{name} is required when kafka_security_protocol is {self.kafka_security_protocol}")
        return self

    @property
    def group_id(self) -> str:
        return self.consumer_group or f"rnpc-{self.service_name}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
