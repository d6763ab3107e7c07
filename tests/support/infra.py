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
             .with_envs(KAFKA_NODE_ID="1", KAFKA_PROCESS_ROLES="broker,controller",
                        KAFKA_LISTENERS=f"PLAINTEXT://:{kafka_port},CONTROLLER://:9093",
                        KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://127.0.0.1:{kafka_port}",
                        KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                        KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER", KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
                        KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1", KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
                        KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1", KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
                        KAFKA_AUTO_CREATE_TOPICS_ENABLE="false")
             .with_bind_ports(kafka_port, kafka_port))
    with postgres, kafka:
        # The image starts the server twice (init, then for real): wait for the second.
        wait_for_logs(postgres, lambda logs: logs.count("ready to accept connections") >= 2, timeout=120)
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        yield


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
    return run_id
