"""Real Kafka and Postgres for the tests.

With a Docker engine and no OMS_TEST_INFRA=local, testcontainers starts the official images; otherwise the
project's own scripts start (or reuse) the local broker and database. Each test session then gets its own
database and its own topic prefix on them, so runs never see each other's data.
"""

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from ops.env import ROOT

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:15"


def docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


@contextmanager
def local_infra() -> Iterator[None]:
    for script in ("postgres.sh", "kafka.sh"):
        subprocess.run([str(ROOT / "deploy" / script), "start"], check=True)
    yield


@contextmanager
def container_infra() -> Iterator[None]:
    """The official images on the same loopback ports as the local scripts, so every setting stays the same."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    kafka_port, pg_port = int(os.environ["OMS_KAFKA_PORT"]), int(os.environ["OMS_PG_PORT"])
    postgres = (DockerContainer(POSTGRES_IMAGE)
                .with_env("POSTGRES_USER", os.environ["OMS_PG_ADMIN_USER"])
                .with_env("POSTGRES_PASSWORD", os.environ["OMS_PG_ADMIN_PASSWORD"])
                .with_bind_ports(5432, pg_port))
    kafka = (DockerContainer(KAFKA_IMAGE)
             .with_envs(**kafka_container_env(kafka_port))
             .with_volume_mapping(str(ROOT), "/oms", "ro")
             .with_kwargs(entrypoint=["bash", "/oms/deploy/kafka/container-start.sh"])
             .with_bind_ports(kafka_port, kafka_port))
    with postgres, kafka:
        # The image starts the server twice (init, then for real): wait for the second.
        wait_for_logs(postgres, lambda logs: logs.count("ready to accept connections") >= 2, timeout=120)
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        yield


def kafka_container_env(kafka_port: int) -> dict[str, str]:
    """As deploy/kafka/server.properties.in (and docker-compose.yml): SCRAM logins, the controller's static
    PLAIN user, ACLs; the SCRAM users come from the OMS_*_KAFKA_PASSWORD variables (container-start.sh)."""
    broker_password = os.environ["OMS_BROKER_KAFKA_PASSWORD"]
    passwords = {name: value for name, value in os.environ.items()
                 if name.startswith("OMS_") and name.endswith("_KAFKA_PASSWORD")}
    return dict(
        passwords, CLUSTER_ID="oms-test-kraft-cluster", KAFKA_NODE_ID="1", KAFKA_PROCESS_ROLES="broker,controller",
        KAFKA_LOG_DIRS="/var/lib/kafka/data",
        KAFKA_LISTENERS=f"CLIENT://:{kafka_port},CONTROLLER://:9093",
        KAFKA_ADVERTISED_LISTENERS=f"CLIENT://127.0.0.1:{kafka_port}",
        KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER", KAFKA_INTER_BROKER_LISTENER_NAME="CLIENT",
        KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
        KAFKA_SASL_ENABLED_MECHANISMS="SCRAM-SHA-512", KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL="SCRAM-SHA-512",
        KAFKA_LISTENER_NAME_CLIENT_SCRAM___SHA___512_SASL_JAAS_CONFIG=(
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="broker" password="{broker_password}";'),
        KAFKA_LISTENER_NAME_CONTROLLER_SASL_ENABLED_MECHANISMS="PLAIN",
        KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL="PLAIN",
        KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG=(
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="broker" password="{broker_password}" user_broker="{broker_password}";'),
        KAFKA_AUTHORIZER_CLASS_NAME="org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND="false", KAFKA_SUPER_USERS="User:broker;User:ops",
        KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1", KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
        KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1", KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        KAFKA_AUTO_CREATE_TOPICS_ENABLE="false", KAFKA_METADATA_LOG_MAX_SNAPSHOT_INTERVAL_MS="10000")


def infra() -> "contextmanager[None]":
    mode = os.environ.get("OMS_TEST_INFRA", "auto")
    if mode == "testcontainers" or (mode == "auto" and docker_available()):
        return container_infra()
    return local_infra()


def isolate_run() -> str:
    """A fresh database name and topic prefix for this test session; returns the run id."""
    run_id = uuid.uuid4().hex[:8]
    os.environ["OMS_PG_DATABASE"] = f"oms_test_{run_id}"
    os.environ["OMS_TOPIC_PREFIX"] = f"test-{run_id}."
    # The services tests run in-process are instance 1 of their service, as the first process of each service a
    # stack starts (ops/processes.py): one that follows another of the same service on the session's topics (a
    # module's, then the session's) takes over its static group membership at once, instead of finding it held
    # for the session timeout (no LeaveGroup for static members) — as it did when 1 was the default.
    os.environ.setdefault("OMS_INSTANCE_ID", "1")
    return run_id
