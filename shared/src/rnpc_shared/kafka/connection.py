"""How a client reaches the broker: bootstrap servers and, where the broker requires it, SASL.

One place turns settings into aiokafka keyword arguments, so the producer, the consumer, the admin
client and the DLQ replay tool authenticate the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka.helpers import create_ssl_context
from pydantic import SecretStr

from rnpc_shared.settings import KafkaSaslMechanism, KafkaSecurityProtocol, ServiceSettings


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap_servers: str
    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    sasl_mechanism: KafkaSaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None  # repr shows '**********'
    ssl_cafile: str | None = None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> KafkaConnection:
        return cls(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
            ssl_cafile=settings.kafka_ssl_cafile,
        )

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.uses_sasl:
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
                raise ValueError(f"{self.security_protocol} needs a SASL mechanism, username and password")
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(cafile=self.ssl_cafile)
        return options

    def settings_fields(self) -> dict[str, Any]:
        """The same connection as ServiceSettings keyword arguments (tests, tools)."""
        return {
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "kafka_security_protocol": self.security_protocol,
            "kafka_sasl_mechanism": self.sasl_mechanism,
            "kafka_sasl_username": self.sasl_username,
            "kafka_sasl_password": self.sasl_password,
            "kafka_ssl_cafile": self.ssl_cafile,
        }

    def service_env(self, service: str) -> dict[str, str]:
        """The same connection as a service's environment (e.g. SCORING_KAFKA_SASL_USERNAME)."""
        prefix = service.upper() + "_KAFKA_"
        env = {prefix + "BOOTSTRAP_SERVERS": self.bootstrap_servers, prefix + "SECURITY_PROTOCOL": self.security_protocol}
        if self.sasl_mechanism and self.sasl_username and self.sasl_password:
            env |= {
                prefix + "SASL_MECHANISM": self.sasl_mechanism,
                prefix + "SASL_USERNAME": self.sasl_username,
                prefix + "SASL_PASSWORD": self.sasl_password.get_secret_value(),
            }
        if self.ssl_cafile:
            env[prefix + "SSL_CAFILE"] = self.ssl_cafile
        return env
