"""Alembic environment of the recommendation service: its own tables plus the shared outbox and inbox."""

from rnpc_recommendation.settings import RecommendationSettings
from rnpc_recommendation.tables import SQLModel
from rnpc_shared.alembic_env import run_env

run_env(SQLModel.metadata, RecommendationSettings().database_url.get_secret_value())
