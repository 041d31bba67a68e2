"""Settings base: one BaseSettings per service with its own env prefix (e.g. SCORING_DATABASE_URL)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class ServiceSettings(BaseSettings):
    """Common runtime settings; a service subclasses it with its env prefix and defaults."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "service"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    database_url: str = "sqlite+aiosqlite:///./.var/service.db"
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
    handler_max_attempts: int = Field(default=3, ge=1)
    retry_backoff_s: float = Field(default=0.2, ge=0)
    liveness_poll_stale_s: float = Field(default=60.0, gt=0)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    # Test-only fault injection: when set, the process SIGKILLs itself right after its first
    # consumer DB commit (before the offset commit) and leaves this marker file behind.
    fault_kill_after_db_commit_marker: str | None = None

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
