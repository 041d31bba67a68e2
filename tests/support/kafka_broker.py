"""Apache Kafka for the `make test-kafka` leg: one combined KRaft node (broker + controller), its
log on disk, SASL/SCRAM-SHA-512 with one principal per service and an admin, and the ACLs of
rnpc_shared.kafka.access enforced by the StandardAuthorizer.

The jars come from Maven Central (tools/kafka/pom.xml, fetched by `make kafka-broker`); if they
are missing this fails loudly instead of skipping. Same interface as the embedded broker
(bootstrap_servers, connection, service_env, start, stop), plus kill() and restart() on the same
log directory for fault tests.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import signal
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.admin import CreateAclsRequest, DescribeAclsRequest
from pydantic import SecretStr

from rnpc_devstack.stack import _die_with_parent, free_port, repo_root, stop_process, wait_for_port, wait_until
from rnpc_shared.kafka.access import PRINCIPALS
from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.settings import KafkaSaslMechanism

MECHANISM: KafkaSaslMechanism = "SCRAM-SHA-512"
ADMIN = "admin"  # the harness's super user: creates topics and ACLs, reads anything in tests
START_DEADLINE_S = 120  # JVM start-up plus log recovery on a busy 2-core machine

# Kafka protocol codes (org.apache.kafka.common.acl / resource).
RESOURCE_TOPIC, RESOURCE_GROUP = 2, 3
PATTERN_ANY, PATTERN_LITERAL = 1, 3
OPERATION_ANY, OPERATION_READ, OPERATION_WRITE = 1, 3, 4
PERMISSION_ANY, PERMISSION_ALLOW = 1, 3

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = org.apache.kafka
logger.kafka.level = INFO
"""

T = TypeVar("T")


def kafka_lib_dir() -> Path:
    return Path(os.environ.get("RNPC_KAFKA_LIB", repo_root() / ".tools" / "kafka" / "lib"))


def _classpath() -> str:
    lib = kafka_lib_dir()
    jars = sorted(lib.glob("kafka_2.13-*.jar")) if lib.is_dir() else []
    if not jars:
        raise RuntimeError(
            f"no Apache Kafka jars in {lib}: run `make kafka-broker` (Maven fetches tools/kafka/pom.xml's "
            "dependencies from Maven Central); the Kafka leg is never skipped"
        )
    return f"{lib}/*"


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java:
        raise RuntimeError("java not found (JAVA_HOME or PATH): the Kafka leg needs Java 17+")
    return java


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run on a private loop in a thread: callers may be inside a running event loop."""

    async def main() -> T:
        return await factory()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def acl_bindings() -> list[tuple[int, str, str, int]]:
    """(resource type, resource name, principal, operation) allowed, one per ACL, from the access table."""
    bindings: list[tuple[int, str, str, int]] = []
    for access in PRINCIPALS:
        principal = f"User:{access.principal}"
        bindings += [(RESOURCE_TOPIC, topic, principal, OPERATION_WRITE) for topic in access.writes]
        bindings += [(RESOURCE_TOPIC, topic, principal, OPERATION_READ) for topic in access.reads]
        bindings.append((RESOURCE_GROUP, access.group, principal, OPERATION_READ))
    return bindings


@dataclass
class KafkaBroker:
    """One Apache Kafka node; its data lives in `work_dir` and survives kill() and restart()."""

    work_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    passwords: dict[str, str] = field(
        default_factory=lambda: {user: secrets.token_urlsafe(24) for user in (ADMIN, *(a.principal for a in PRINCIPALS))}
    )
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def connection(self) -> KafkaConnection:
        return self.connection_for(ADMIN)

    def connection_for(self, principal: str, password: str | None = None) -> KafkaConnection:
        """A SASL/SCRAM connection as `principal` (with its own password unless one is given)."""
        return KafkaConnection(
            bootstrap_servers=self.bootstrap_servers,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=MECHANISM,
            sasl_username=principal,
            sasl_password=SecretStr(password if password is not None else self.passwords[principal]),
        )

    def service_env(self, service: str) -> dict[str, str]:
        # Apache Kafka wakes a waiting fetch when data arrives: the production default (500 ms) is
        # right here, unlike on the embedded broker.
        return self.connection_for(service).service_env(service) | {f"{service.upper()}_KAFKA_FETCH_MAX_WAIT_MS": "500"}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, log_path: Path | None = None) -> KafkaBroker:
        """Format the log directory on first start, start the node, wait until it serves clients."""
        self.log_path = log_path or self.log_path or self.work_dir / "kafka.log"
        first_start = not (self.data_dir / "meta.properties").exists()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if first_start:
            self._format()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [_java(), "-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
             "-cp", _classpath(), "kafka.Kafka", str(self.work_dir / "server.properties")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        wait_for_port(self.port, START_DEADLINE_S, self.process)
        wait_until(self._serves_clients, START_DEADLINE_S, f"Apache Kafka on {self.bootstrap_servers} to serve clients")
        if first_start:
            self._create_acls()
        return self

    def stop(self) -> None:
        """SIGTERM: controlled shutdown, logs flushed and closed cleanly."""
        if self.process is not None:
            stop_process(self.process, timeout_s=60)
        self._release()

    def kill(self) -> None:
        """SIGKILL: no shutdown at all; the next start recovers the log from disk."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self._release()

    def restart(self) -> KafkaBroker:
        """Start again on the same ports and log directory (after kill() or stop())."""
        self.kill()
        return self.start()

    def _release(self) -> None:
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- set-up ------------------------------------------------------------------------------

    def _write_config(self) -> None:
        admin_password = self.passwords[ADMIN]
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"CLIENT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": "CLIENT",
            "controller.listener.names": "CONTROLLER",
            # Clients and inter-broker traffic: SCRAM. The controller listener takes PLAIN with a
            # static admin entry (SCRAM credentials live in the metadata the controller serves).
            "listener.name.client.sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.client.{MECHANISM.lower()}.sasl.jaas.config":
                f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" '
                f'password="{admin_password}";',
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config":
                f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{ADMIN}" '
                f'password="{admin_password}" user_{ADMIN}="{admin_password}";',
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN}",
            "allow.everyone.if.no.acl.found": "false",
            "log.dirs": str(self.data_dir),
            # As in production, topics are declared (KafkaTopic / ensure_topics), never auto-created.
            "auto.create.topics.enable": "false",
            "num.partitions": "3",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",  # fewer partitions: faster first group join
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",  # tests start consumers at once
            # After a SIGKILL the controller fences the dead incarnation only when its session
            # expires (default 9 s): a shorter session makes restart() quicker, nothing else.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        }
        config = self.work_dir / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        config.chmod(0o600)  # holds the admin password
        (self.work_dir / "log4j2.properties").write_text(LOG4J2)

    def _format(self) -> None:
        """kafka-storage format, with every principal's SCRAM credential in the bootstrap metadata."""
        # One id in 64 starts with "-": passed as "--cluster-id=…" so it is never read as an option.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        scram = [
            arg
            for user, password in self.passwords.items()
            for arg in ("--add-scram", f"{MECHANISM}=[name={user},password={password}]")
        ]
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            completed = subprocess.run(
                [_java(), "-Xmx256m", "-XX:TieredStopAtLevel=1",
                 f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
                 "-cp", _classpath(), "kafka.tools.StorageTool", "format",
                 f"--cluster-id={cluster_id}", "-c", str(self.work_dir / "server.properties"), *scram],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=START_DEADLINE_S,
            )
        if completed.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed ({completed.returncode}); see {self.log_path}")

    def _admin_call(self, call: Callable[[AIOKafkaAdminClient], Awaitable[T]]) -> T:
        async def run() -> T:
            admin = AIOKafkaAdminClient(**self.connection.client_options(), request_timeout_ms=10_000)
            await admin.start()
            try:
                return await call(admin)
            finally:
                await admin.close()

        return run_async(run)

    def _serves_clients(self) -> bool:
        """The admin can authenticate and read cluster metadata (broker registered and unfenced)."""
        try:
            return self._admin_call(lambda admin: admin.describe_cluster()) is not None
        except KafkaError:
            return False

    def _create_acls(self) -> None:
        bindings = acl_bindings()

        async def create(admin: AIOKafkaAdminClient) -> None:
            for resource_type, name, principal, operation in bindings:
                request = CreateAclsRequest(
                    resource_type, name, PATTERN_LITERAL, principal, "*", operation, PERMISSION_ALLOW
                )
                response: Any = await admin._send_request(request)  # aiokafka has no create_acls() yet
                for result in response.creation_responses:
                    if result[0] != 0:
                        raise for_code(result[0])(f"creating ACL {principal} {operation} {name}: {result[1]}")

        async def count(admin: AIOKafkaAdminClient) -> int:
            request = DescribeAclsRequest(1, None, PATTERN_ANY, None, None, OPERATION_ANY, PERMISSION_ANY)
            response: Any = await admin._send_request(request)
            return sum(len(resource[3]) for resource in response.resources)

        self._admin_call(create)
        # The authorizer applies ACLs as it replays the metadata log: wait until all are in force.
        wait_until(lambda: self._admin_call(count) >= len(bindings), 30, "the ACLs to take effect")
