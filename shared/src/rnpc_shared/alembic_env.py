"""The body of every service's Alembic env.py: async engine, URL from settings or `-x db_url=`."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from rnpc_shared.db import make_engine


def _run(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(database_url: str, metadata: MetaData) -> None:
    engine = make_engine(database_url)
    async with engine.connect() as connection:
        await connection.run_sync(_run, metadata)
    await engine.dispose()


def run_env(metadata: MetaData, default_database_url: str) -> None:
    database_url = context.get_x_argument(as_dictionary=True).get("db_url") or default_database_url
    if context.is_offline_mode():
        context.configure(url=database_url, target_metadata=metadata, literal_binds=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_async(database_url, metadata))
