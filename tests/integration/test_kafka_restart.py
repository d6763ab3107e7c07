"""A broker restart keeps every SCRAM login, after users were added and removed while it ran.

Kafka 4.1, replaying its metadata log from the start, loses every SCRAM user when a removed user comes first in
the replay's hash order (ScramDelta.apply drops the mechanism's whole map), so nobody logs in after the restart,
not even the broker. deploy/kafka.sh has the broker snapshot its metadata and waits for the first snapshot, so a
restart replays from it instead (README: "Who may do what on Kafka"). A broker of its own, on other ports,
removes a user whose name Java's HashMap puts first, and is restarted."""

import os
import re
import subprocess

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ops.env import ROOT
from ops.principals import add_user, remove_user
from ops.waiting import eventually
from shared.settings import KafkaLogin, Settings

pytestmark = pytest.mark.integration

# Beside the shared broker (19092/19093) and the TLS test's (19192/19193), below the ephemeral range.
PORT, CONTROLLER_PORT = 19292, 19293


@pytest.fixture
def kafka(tmp_path):
    """`kafka("stop")`, `kafka("start")`: deploy/kafka.sh on a broker of its own, started (freshly formatted)."""
    env = dict(os.environ, OMS_STATE_DIR=str(tmp_path), OMS_KAFKA_TLS="0", OMS_KAFKA_PORT=str(PORT),
               OMS_KAFKA_CONTROLLER_PORT=str(CONTROLLER_PORT), OMS_KAFKA_BOOTSTRAP=f"127.0.0.1:{PORT}")

    def run(command: str) -> None:
        subprocess.run([str(ROOT / "deploy" / "kafka.sh"), command], env=env, check=True)

    run("start")
    try:
        yield run
    finally:
        run("stop")


async def test_every_login_survives_a_restart_after_a_user_was_removed(kafka):
    config = Settings(kafka_bootstrap=f"127.0.0.1:{PORT}", kafka_tls=False)
    kept, kept_password = "kept", "kept-password"
    removed = replayed_first(format_time_users() + [kept])
    await add_user(config, kept, kept_password)
    await add_user(config, removed, "removed-password")
    await remove_user(config, removed)

    kafka("stop")
    kafka("start")

    for user in format_time_users():
        await eventually(lambda: can_log_in(config.kafka_login(user)), timeout=15, what=f"{user} to log in")
    await eventually(lambda: can_log_in(KafkaLogin(config.kafka_bootstrap, kept, kept_password)), timeout=15,
                     what=f"{kept} to log in")
    assert not await can_log_in(KafkaLogin(config.kafka_bootstrap, removed, "removed-password"))


def format_time_users() -> list[str]:
    """deploy/kafka.sh's users (deploy/lib.sh): one per one-word OMS_<NAME>_KAFKA_PASSWORD in deploy/dev.env."""
    dev_env = (ROOT / "deploy" / "dev.env").read_text()
    return [name.lower() for name in re.findall(r"^OMS_([A-Z]+)_KAFKA_PASSWORD=", dev_env, re.MULTILINE)]


def replayed_first(users: list[str]) -> str:
    """A new user name that a java.util.HashMap holding it and `users` iterates before all of them: the order in
    which the replay's ScramDelta applies its changes, so that the removal comes first."""
    capacity = 16
    while len(users) + 1 > capacity * 3 // 4:
        capacity *= 2
    lowest = min(java_hashmap_bucket(user, capacity) for user in users)
    return next(name for name in (f"gone-{i}" for i in range(10_000))
                if java_hashmap_bucket(name, capacity) < lowest)


def java_hashmap_bucket(name: str, capacity: int) -> int:
    hash_code = 0
    for char in name:  # String.hashCode of an ASCII name
        hash_code = (31 * hash_code + ord(char)) & 0xFFFFFFFF
    return (hash_code ^ (hash_code >> 16)) & (capacity - 1)


async def can_log_in(login: KafkaLogin) -> bool:
    """Whether the broker takes the login (no ACLs here: a client that needs none)."""
    admin = AIOKafkaAdminClient(**login.aiokafka())
    try:
        await admin.start()
        return True
    except KafkaError:
        return False
    finally:
        await admin.close()
