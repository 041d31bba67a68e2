from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from rnpc_shared.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore")

    service_name: str = "scoring"
    port: int = 8001
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///./.var/scoring.db")  # may hold a password: never logged
