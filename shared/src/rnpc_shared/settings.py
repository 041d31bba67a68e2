"""Settings base: one BaseSettings per service with its own env prefix (e.g. SCORING_DATABASE_URL)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Common runtime settings; a service subclasses it with its env prefix and defaults."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "service"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    database_url: str = "sqlite+aiosqlite:///./.var/service.db"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
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
    # Test-only fault injection: when set, the process SIGKILLs itself right after its first
    # consumer DB commit (before the offset commit) and leaves this marker file behind.
    fault_kill_after_db_commit_marker: str | None = None

    @property
    def group_id(self) -> str:
        return self.consumer_group or f"rnpc-{self.service_name}"
