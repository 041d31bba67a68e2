from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from rnpc_shared.settings import ServiceSettings


class EvidenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EVIDENCE_", extra="ignore")

    service_name: str = "evidence"
    port: int = 8002
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///./.var/evidence.db")  # may hold a password: never logged
