"""Alembic environment of the gateway service: its own tables plus the shared outbox and inbox."""

from rnpc_gateway.settings import GatewaySettings
from rnpc_gateway.tables import SQLModel
from rnpc_shared.alembic_env import run_env

run_env(SQLModel.metadata, GatewaySettings().database_url.get_secret_value())
