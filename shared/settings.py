"""Configuration from the environment, validated at start-up so a missing value fails fast with a clear message."""

import os
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiokafka.helpers import create_ssl_context
from faststream.security import SASLScram512
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


# The Kafka principal of `oms prepare` and the ops tools: a super user, like the broker's own.
OPS_PRINCIPAL = "ops"
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Where the deploy scripts keep the broker, the database and the services' run files (as deploy/lib.sh)."""
    return Path(os.environ.get("OMS_STATE_DIR", ROOT / ".oms"))


def dev_kafka_ca_file() -> Path:
    """The CA deploy/kafka.sh makes for the broker's certificate when OMS_KAFKA_TLS=1."""
    return state_dir() / "kafka" / "tls" / "ca.crt"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port]")
    kafka_tls: bool = Field(False, description="Connect to Kafka over TLS (SASL_SSL) instead of SASL_PLAINTEXT")
    kafka_ca_file: Path = Field(default_factory=dev_kafka_ca_file,
                                description="The CA the broker's certificate must be signed by (with kafka_tls)")
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_database: str = "oms"
    pg_admin_user: str = "postgres"
    pg_admin_password: str = ""
    topic_prefix: str = Field("", description="Prepended to every topic name; isolates test runs on a shared broker")
    log_level: str = "INFO"
    # Two live processes with one id fence each other out of their groups for as long as both run, so the default
    # is the host's name: a container's own under `docker compose up --scale`, which cannot give each replica an
    # environment of its own (it was "1" for all of them).
    instance_id: str = Field(default_factory=socket.gethostname,
                             description="This process's name among its service's instances (by default the host's "
                                         "name: a container's or a pod's own; a number under `oms up`): its static "
                                         "consumer-group membership, so a restart gets its partitions back at once. "
                                         "Two processes on one host need one each")
    instance_wait_seconds: float = Field(30.0, ge=0, description="How long a starting process waits for another "
                                                                 "holding its instance id to go before it stops")
    consumer_max_records: int = 500
    saga_step_timeout_seconds: float = Field(30.0, description="First deadline of a saga step; doubles per retry")
    return_policy: Path | None = Field(None, description="The returns policy (TOML); unset: "
                                                         "services/capture/returns.toml")
    hold_new_customer_above: Decimal | None = Field(None, ge=0, description="A new customer's first order whose "
                                                                           "total is above this is held for a "
                                                                           "fraud review (unset: no such rule)")
    pickup_hold_seconds: float = Field(7 * 86_400.0, gt=0, description="How long a store holds a pickup order "
                                                                       "that is ready before it is cancelled")
    dropship_ack_seconds: float = Field(86_400.0, gt=0, description="How long a dropship vendor may leave a purchase "
                                                                   "order unacknowledged before it goes elsewhere")
    reservation_ttl_seconds: float = Field(900.0, gt=0, description="How long a reservation may stay held (never "
                                                                    "allocated to a location) before it expires")
    low_stock_threshold: int = Field(5, ge=0, description="Network ATP at or below which a SKU is low on stock "
                                                          "(AvailabilityChanged)")
    http_port: int | None = Field(None, description="Port of the service's /health and /metrics; default per service")
    http_host: str = Field("127.0.0.1", description="Interface of /health and /metrics (0.0.0.0 in a container)")
    topic_retention_days: float = Field(7.0, gt=0, description="retention.ms of the topics the OMS creates")
    routing_rules: Path | None = Field(None, description="The routing rule set (TOML); default "
                                                         "services/routing/rules.toml")
    history_quiet_seconds: float = Field(5.0, gt=0, description="How long an order's events must have been quiet "
                                                                "before tracking publishes its history (or ten "
                                                                "times that since its first unpublished event)")
    order_retention_days: float = Field(365.0, gt=0, description="How long an order is kept once closed "
                                                                 "(delivered, collected, shipped or cancelled, no "
                                                                 "return open) before every service forgets it; "
                                                                 "must exceed the longest return window")
    order_purge_interval_seconds: float = Field(3600.0, gt=0, description="How often capture looks for orders past "
                                                                          "their retention")
    inbox_retention_days: float = Field(14.0, description="How long consumers remember a message id; must exceed "
                                                          "the topics' retention, or a redelivery could apply twice")

    @model_validator(mode="after")
    def inbox_outlives_topics(self) -> "Settings":
        if self.inbox_retention_days <= self.topic_retention_days:
            raise ValueError("OMS_INBOX_RETENTION_DAYS must be greater than OMS_TOPIC_RETENTION_DAYS")
        return self

    @model_validator(mode="after")
    def histories_published_within_retention(self) -> "Settings":
        if self.history_quiet_seconds * 10 >= self.topic_retention_days * 86_400:
            raise ValueError("OMS_HISTORY_QUIET_SECONDS must be far below OMS_TOPIC_RETENTION_DAYS: a rebuild finds "
                             "an event not yet in an order's history only on its own topic")
        return self

    @model_validator(mode="after")
    def tls_has_its_ca(self) -> "Settings":
        if self.kafka_tls and not self.kafka_ca_file.is_file():
            raise ValueError(f"OMS_KAFKA_TLS=1, but the CA file {self.kafka_ca_file} is missing (deploy/kafka.sh "
                             "makes the dev CA when started with OMS_KAFKA_TLS=1; or set OMS_KAFKA_CA_FILE)")
        return self

    def admin_dsn(self, database: str | None = None) -> str:
        return self._dsn(self.pg_admin_user, self.pg_admin_password, database or self.pg_database)

    def service_dsn(self, service: str) -> str:
        """The service's runtime role: reads and writes rows of its own schema, owns nothing."""
        return self._dsn(service_role(service), secret(f"OMS_{service.upper()}_DB_PASSWORD"), self.pg_database)

    def owner_dsn(self, service: str) -> str:
        """The role that owns the service's schema and runs its migrations (`oms prepare`), never the service."""
        return self._dsn(owner_role(service), secret(f"OMS_{service.upper()}_OWNER_DB_PASSWORD"), self.pg_database)

    def reader_dsn(self) -> str:
        """Read-only on every service's schema: what the ops tools look with."""
        return self._dsn(READER_ROLE, secret("OMS_OPS_READER_DB_PASSWORD"), self.pg_database)

    def _dsn(self, user: str, password: str, database: str) -> str:
        quoted = ":".join(quote(part, safe="") for part in (user, password))
        return f"postgresql://{quoted}@{self.pg_host}:{self.pg_port}/{quote(database, safe='')}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def kafka_login(self, principal: str = OPS_PRINCIPAL) -> "KafkaLogin":
        """How a Kafka client of this OMS logs in as `principal` (password from OMS_<PRINCIPAL>_KAFKA_PASSWORD)."""
        return KafkaLogin(self.kafka_bootstrap, principal, secret(kafka_password_variable(principal)),
                          self.kafka_ca_file if self.kafka_tls else None)


@dataclass(frozen=True)
class KafkaLogin:
    """A principal's Kafka credentials and how the connection is protected, in the shape each client library
    wants: SASL_SSL verifying the broker's certificate (name included) against `ca_file` when there is one,
    else SASL_PLAINTEXT (loopback only: README)."""

    bootstrap: str
    username: str
    password: str
    ca_file: Path | None = None

    @property
    def security_protocol(self) -> str:
        return "SASL_PLAINTEXT" if self.ca_file is None else "SASL_SSL"

    def ssl_context(self) -> ssl.SSLContext | None:
        return None if self.ca_file is None else create_ssl_context(cafile=self.ca_file)

    def aiokafka(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol,
                "ssl_context": self.ssl_context(), "sasl_mechanism": KAFKA_SASL_MECHANISM,
                "sasl_plain_username": self.username, "sasl_plain_password": self.password}

    def faststream(self) -> SASLScram512:
        return SASLScram512(username=self.username, password=self.password, ssl_context=self.ssl_context())

    def librdkafka(self) -> dict[str, str]:
        """For confluent-kafka and kcat (`-X key=value`)."""
        tls = {} if self.ca_file is None else {"ssl.ca.location": str(self.ca_file),
                                               "ssl.endpoint.identification.algorithm": "https"}
        return {"bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol,
                "sasl.mechanisms": KAFKA_SASL_MECHANISM, "sasl.username": self.username,
                "sasl.password": self.password, **tls}


def kafka_password_variable(principal: str) -> str:
    return f"OMS_{principal.upper().replace('-', '_').replace('.', '_')}_KAFKA_PASSWORD"


# Where each service serves /health/live, /health/ready and /metrics on loopback under `oms up`.
DEFAULT_HTTP_PORTS = {"capture": 18081, "inventory": 18082, "routing": 18083, "fulfillment": 18084,
                      "notification": 18085, "tracking": 8080}  # tracking: its HTTP API is on the same port
# The ops console (ops/console): not a service, run beside them, reached through tracking's /ops.
CONSOLE = "console"
CONSOLE_HTTP_PORT = 8081


READER_ROLE = "oms_ops_reader"


def service_role(service: str) -> str:
    return f"oms_{service}"


def owner_role(service: str) -> str:
    return f"oms_{service}_owner"


def secret(name: str) -> str:
    try:
        return os.environ[name]
    except KeyError:
        raise SystemExit(f"configuration error: set {name} (see deploy/dev.env)") from None


def service_environment(env: Mapping[str, str], service: str) -> dict[str, str]:
    """What a service process is given: the environment without any password or secret but its own runtime ones
    (database and Kafka, and the shared secrets it uses)."""
    own = runtime_secrets(service)
    return {name: value for name, value in env.items() if name in own or not _is_secret(name)}


def supervisor_environment(env: Mapping[str, str], services: Iterable[str]) -> dict[str, str]:
    """What the supervisor is given: the runtime passwords of the services it runs, no other secret."""
    runtime = {name for service in services for name in runtime_secrets(service)}
    return {name: value for name, value in env.items() if name in runtime or not _is_secret(name)}


# Secrets beside the passwords, and the services given each.
SHARED_SECRETS = {"OMS_TRACKING_LINK_SECRET": ("notification", "tracking"),  # signs the tracking page's links
                  # The console reads as the ops tools do, replays as ops, and has its operators' login.
                  "OMS_OPS_READER_DB_PASSWORD": (CONSOLE,), "OMS_OPS_KAFKA_PASSWORD": (CONSOLE,),
                  "OMS_CONSOLE_PASSWORD": (CONSOLE,), "OMS_CONSOLE_SESSION_SECRET": (CONSOLE,)}


def runtime_secrets(service: str) -> set[str]:
    shared = {name for name, services in SHARED_SECRETS.items() if service in services}
    return {f"OMS_{service.upper()}_DB_PASSWORD", kafka_password_variable(service), *shared}


def _is_secret(name: str) -> bool:
    return name.startswith("OMS_") and name.endswith(("_PASSWORD", "_SECRET"))


@cache
def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = ", ".join(f"OMS_{'_'.join(map(str, e['loc'])).upper()} missing" if e["type"] == "missing"
                             else e["msg"] for e in error.errors())
        raise SystemExit(f"configuration error: {problems} (see deploy/dev.env)") from None
