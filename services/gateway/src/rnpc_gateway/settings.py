from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rnpc_shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    port: int = 8000
    database_url: str = "sqlite+aiosqlite:///./.var/gateway.db"
    scoring_url: str = "http://127.0.0.1:8001"
    evidence_url: str = "http://127.0.0.1:8002"
    recommendation_url: str = "http://127.0.0.1:8003"
    upstream_timeout_s: float = Field(default=10.0, gt=0)
    # Re-drive: a latest record version with no recommendation after this long is sent again,
    # so even a broker that lost its data (the embedded one keeps it in memory) loses no case.
    redrive_after_s: float = Field(default=300.0, gt=0)
    redrive_interval_s: float = Field(default=60.0, gt=0)
    redrive_max_attempts: int = Field(default=5, ge=1)
