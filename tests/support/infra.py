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
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, username="oms_admin", password="oms-admin-dev", dbname="postgres") as pg, \
            KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka:
        os.environ.update(
            OMS_PG_HOST=pg.get_container_host_ip(), OMS_PG_PORT=str(pg.get_exposed_port(5432)),
            OMS_PG_ADMIN_USER="oms_admin", OMS_PG_ADMIN_PASSWORD="oms-admin-dev",
            OMS_KAFKA_BOOTSTRAP=kafka.get_bootstrap_server(),
        )
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
