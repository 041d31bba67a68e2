"""Kafka client security from configuration: PLAINTEXT by default, SASL when configured, the
password never shown."""

from __future__ import annotations

import ssl

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.settings import ServiceSettings


class ProbeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROBE_", extra="ignore")


def test_the_default_is_plaintext_without_credentials() -> None:
    options = KafkaConnection.from_settings(ProbeSettings()).client_options()
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_settings_from_the_environment_reach_the_client_and_stay_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = KafkaConnection(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="scoring",
        sasl_password=SecretStr("s3cret-value"),
    )
    for name, value in connection.service_env("probe").items():
        monkeypatch.setenv(name, value)
    settings = ProbeSettings()
    assert KafkaConnection.from_settings(settings) == connection

    options = KafkaConnection.from_settings(settings).client_options()
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "scoring", "s3cret-value",
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    for shown in (repr(settings), str(settings), repr(connection), str(settings.model_dump())):
        assert "s3cret-value" not in shown


@pytest.mark.parametrize("missing", ["kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"])
def test_sasl_without_every_credential_is_a_configuration_error(missing: str) -> None:
    fields = {
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "gateway",
        "kafka_sasl_password": "pw",
    }
    del fields[missing]
    with pytest.raises(ValidationError, match=missing):
        ProbeSettings(**fields)


def test_an_unknown_mechanism_is_rejected() -> None:
    with pytest.raises(ValidationError, match="kafka_sasl_mechanism"):
        ProbeSettings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="GSSAPI",
                      kafka_sasl_username="u", kafka_sasl_password="p")
