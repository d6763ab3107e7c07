"""kcat (librdkafka), a Kafka client we did not write, logged in like any outside client."""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import confluent_kafka

from shared.settings import OPS_PRINCIPAL, Settings


@dataclass(frozen=True)
class Kcat:
    executable: str
    library_dir: Path

    def run(self, settings: Settings, *args: str, principal: str = OPS_PRINCIPAL,
            **options) -> subprocess.CompletedProcess:
        """kcat ARGS as `principal` (ops unless told otherwise); `options` go to subprocess.run."""
        login = [flag for key, value in settings.kafka_login(principal).librdkafka().items()
                 for flag in ("-X", f"{key}={value}")]
        env = dict(os.environ, LD_LIBRARY_PATH=str(self.library_dir))
        return subprocess.run([self.executable, *login, *args], env=env, **options)


def current_librdkafka(directory: Path) -> Path:
    """A directory holding confluent-kafka's librdkafka under the name kcat links against. Debian's librdkafka
    (2.0.2) fails SCRAM against Kafka 4 (it repeats the client nonce, which Kafka 4 checks strictly; fixed in
    2.6.1); the C API is stable, so kcat runs on the newer library as it is."""
    bundled = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    [library] = bundled.glob("librdkafka*.so.1")
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "librdkafka.so.1"
    link.unlink(missing_ok=True)
    link.symlink_to(library)
    return directory
