"""Alembic environment of the scoring service: its own tables plus the shared outbox and inbox."""

from rnpc_scoring.settings import ScoringSettings
from rnpc_scoring.tables import SQLModel
from rnpc_shared.alembic_env import run_env

run_env(SQLModel.metadata, ScoringSettings().database_url.get_secret_value())
