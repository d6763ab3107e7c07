"""One setting decides how every Kafka client connects: SASL_PLAINTEXT by default, SASL_SSL verifying the broker
against a CA with OMS_KAFKA_TLS=1."""

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings

@pytest.fixture
def ca_file(tmp_path) -> Path:
    """A CA certificate (any will do: nothing connects here)."""
    path = tmp_path / "ca.crt"
    path.write_text(TEST_CA)
    return path


def test_without_tls_every_client_logs_in_over_sasl_plaintext(monkeypatch):
    monkeypatch.delenv("OMS_KAFKA_TLS", raising=False)
    login = Settings(kafka_bootstrap="127.0.0.1:1").kafka_login("inventory")
    assert login.aiokafka()["security_protocol"] == "SASL_PLAINTEXT" and login.aiokafka()["ssl_context"] is None
    assert not login.faststream().use_ssl
    assert login.librdkafka()["security.protocol"] == "SASL_PLAINTEXT"
    assert not any(key.startswith("ssl.") for key in login.librdkafka())


def test_with_tls_every_client_verifies_the_broker_against_the_ca(monkeypatch, ca_file):
    monkeypatch.setenv("OMS_KAFKA_TLS", "1")
    monkeypatch.setenv("OMS_KAFKA_CA_FILE", str(ca_file))
    login = Settings(kafka_bootstrap="127.0.0.1:1").kafka_login("inventory")
    aiokafka = login.aiokafka()
    assert aiokafka["security_protocol"] == "SASL_SSL"
    assert_verifies(aiokafka["ssl_context"])
    faststream = login.faststream()
    assert faststream.use_ssl
    assert_verifies(faststream.ssl_context)
    assert login.librdkafka()["security.protocol"] == "SASL_SSL"
    assert login.librdkafka()["ssl.ca.location"] == str(ca_file)
    assert login.librdkafka()["ssl.endpoint.identification.algorithm"] == "https"


def assert_verifies(context: ssl.SSLContext) -> None:
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "oms test CA"),),)]


def test_the_ca_is_looked_for_where_deploy_kafka_sh_makes_it(monkeypatch, tmp_path):
    monkeypatch.setenv("OMS_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("OMS_KAFKA_CA_FILE", raising=False)
    assert Settings(kafka_bootstrap="127.0.0.1:1").kafka_ca_file == tmp_path / "kafka" / "tls" / "ca.crt"


def test_tls_without_its_ca_file_is_a_configuration_error(monkeypatch, tmp_path):
    monkeypatch.setenv("OMS_KAFKA_TLS", "1")
    monkeypatch.setenv("OMS_KAFKA_CA_FILE", str(tmp_path / "missing.crt"))
    with pytest.raises(ValidationError, match="missing.crt is missing"):
        Settings(kafka_bootstrap="127.0.0.1:1")


# `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=oms test CA" -days 36500`
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIBgzCCASmgAwIBAgIUbbkNyxwL0TibvyWDjqiBhtTNtbUwCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLb21zIHRlc3QgQ0EwIBcNMjYxMTI4MDk1MzQzWhgPMjEyNjEx
MDQwOTUzNDNaMBYxFDASBgNVBAMMC29tcyB0ZXN0IENBMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEvfgiQhPl9mzFdC34+939ZXtGEJ4DOnIeI5gusT1S0GJtGHFa
S6Q4WCXTanm3FmDlsdCbWpVUudQax85EDz8IHqNTMFEwHQYDVR0OBBYEFF0MGx6i
6PXkil77hLuBh4MICIwrMB8GA1UdIwQYMBaAFF0MGx6i6PXkil77hLuBh4MICIwr
MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAICD9obo88NjIOZ9
UHKbDvR70hgKwFCIsN087HH0E0TiAiAeXasJfk2lMY15CKyQLnaSpJ5mHJplDg+H
wNv9KE6G3Q==
-----END CERTIFICATE-----
"""
