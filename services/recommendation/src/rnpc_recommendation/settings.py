from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from rnpc_recommendation.domain.policy import DEFAULT_RESTAGING_WINDOW_DAYS, Policy

from rnpc_shared.settings import ServiceSettings


class RecommendationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RECOMMENDATION_", extra="ignore")

    service_name: str = "recommendation"
    port: int = 8003
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///./.var/recommendation.db")  # may hold a password: never logged
    # Institutional policy (not a clinical figure): imaging older than this before the recurrence
    # diagnosis is not accepted as restaging. Named as policy on every recommendation.
    restaging_window_days: int = Field(default=DEFAULT_RESTAGING_WINDOW_DAYS, ge=1, le=3650)

    def policy(self) -> Policy:
        return Policy(restaging_window_days=self.restaging_window_days)
