"""The console's own record of what operators did to dead letters: an append-only JSON-lines file (who, when,
what, result). A replay is also recorded on the dead-letter topic (DeadLetterReplayed, as `oms dead-letters
--replay` does); this file adds the result and the letters marked resolved."""

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    at: str
    operator: str
    action: str  # replay, resolve
    position: str  # source topic/partition/offset
    consumer: str
    result: str


class AuditLog:
    def __init__(self, path: Path):
        self.path = path

    def append(self, operator: str, action: str, position: str, consumer: str, result: str) -> Entry:
        entry = Entry(datetime.now(UTC).isoformat(timespec="seconds"), operator, action, position, consumer, result)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as log:
            log.write(json.dumps(asdict(entry)) + "\n")
            log.flush()
            os.fsync(log.fileno())
        return entry

    def entries(self) -> list[Entry]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [Entry(**json.loads(line)) for line in lines if line.strip()]

    def replayed(self, consumer: str, position: str) -> Entry | None:
        return next((e for e in self.entries() if e.action == "replay" and e.consumer == consumer
                     and e.position == position and e.result.startswith("replayed")), None)

    def resolved(self) -> set[tuple[str, str]]:
        return {(e.consumer, e.position) for e in self.entries() if e.action == "resolve"}
