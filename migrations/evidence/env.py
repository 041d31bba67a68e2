"""Alembic environment of the evidence service: its own tables plus the shared outbox and inbox."""

from rnpc_evidence.settings import EvidenceSettings
from rnpc_evidence.tables import SQLModel
from rnpc_shared.alembic_env import run_env

run_env(SQLModel.metadata, EvidenceSettings().database_url.get_secret_value())
