from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from rnpc_shared.settings import ServiceSettings


class RecommendationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RECOMMENDATION_", extra="ignore")

    service_name: str = "recommendation"
    port: int = 8003
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///./.var/recommendation.db")  # may hold a password: never logged
