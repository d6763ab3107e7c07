"""Session fixtures shared by integration and end-to-end tests: real infrastructure, a fresh database and
topic namespace per run, and an admin connection for looking at what the services did."""

import os
import subprocess
import uuid

import asyncpg
import pytest
from aiokafka.errors import KafkaError

from ops.env import ROOT, load_dev_env
from ops.prepare import discard_topics, prepare
from ops.principals import Principal, add_party, remove_user
from ops.waiting import eventually
from shared.messaging.outbox import make_producer
from shared.settings import Settings, kafka_password_variable, settings

from .support import runs
from .support.infra import infra, isolate_run
from .support.kcat import Kcat, current_librdkafka

load_dev_env()


@pytest.fixture(scope="session")
def run_id():
    with infra():
        yield isolate_run()


@pytest.fixture(scope="session")
async def config(run_id) -> Settings:
    settings.cache_clear()
    config = settings()
    async with runs.alive(config, run_id):
        await runs.sweep_dead_runs(config)
        await prepare(config)
        yield config
        await discard_topics(config)
        if os.environ.get("OMS_TEST_KEEP_DATABASE") == "1":
            await runs.keep(config)
        else:
            conn = await asyncpg.connect(config.admin_dsn("postgres"))
            await conn.execute(f'DROP DATABASE IF EXISTS "{config.pg_database}" WITH (FORCE)')
            await conn.close()


@pytest.fixture(scope="session")
async def admin(config) -> asyncpg.Pool:
    """Superuser access for assertions only; the services themselves never have it."""
    pool = await asyncpg.create_pool(config.admin_dsn(), min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def party(config):
    """Adds an outside party (`await party("channel", "t1a2b3c4")`): its principal, with a fresh password in the
    environment where clients look for it, its own topic and ACLs; removed when the session ends (users are not
    prefixed, so every session names its own parties)."""
    added = []

    async def add(kind: str, name: str) -> Principal:
        variable = kafka_password_variable(f"{kind}-{name}")
        os.environ[variable] = uuid.uuid4().hex
        principal = await add_party(config, kind, name, os.environ[variable])
        added.append((principal.name, variable))
        # A new SCRAM user reaches the broker's credential cache through the metadata log: a moment later.
        await eventually(lambda: can_log_in(config, principal.name), what=f"{principal.name} to log in")
        return principal

    yield add
    for principal, variable in added:
        await remove_user(config, principal)
        os.environ.pop(variable)


async def can_log_in(config: Settings, principal: str) -> bool:
    producer = make_producer(config.kafka_login(principal), "test-login")
    try:
        await producer.start()
        return True
    except KafkaError:
        return False
    finally:
        await producer.stop()


@pytest.fixture(scope="session")
def kcat(tmp_path_factory) -> Kcat:
    """kcat (librdkafka), a Kafka client we did not write; installed like the deploy scripts install what they
    miss (apt, when root)."""
    found = subprocess.run(["bash", "-c", f'. "{ROOT}/deploy/lib.sh" && need_command kcat kcat && command -v kcat'],
                           capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"kcat is needed: {found.stderr.strip()}")
    return Kcat(found.stdout.strip(), current_librdkafka(tmp_path_factory.mktemp("librdkafka")))
