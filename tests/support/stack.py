"""A whole OMS of its own for one test: a fresh database and topic namespace, the six services as processes,
and the means to hurt them (kill -9, restart, extra instances)."""

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from ops import invariants
from ops.prepare import discard_topics, prepare
from ops.processes import ServiceProcess
from ops.waiting import eventually
from shared.db.bootstrap import SERVICES
from shared.settings import Settings

from .services import stop_all, wait_started


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    run_dir: Path
    procs: dict[str, ServiceProcess] = field(default_factory=dict)

    async def start(self, name: str, instance: int = 1) -> ServiceProcess:
        proc = ServiceProcess(name, self.run_dir, instance)
        self.procs[proc.label] = proc
        proc.start(self.env)
        await wait_started(proc)
        return proc

    def kill(self, label: str) -> None:
        self.procs[label].kill()

    async def restart(self, label: str) -> None:
        proc = self.procs[label]
        proc.logfile.write_text("")  # wait_started looks for this run's start line
        proc.start(self.env)
        await wait_started(proc)

    async def crash(self, label: str, down_for: float = 0.3) -> None:
        """kill -9, down a moment (what it left half done stays so), then started again."""
        self.kill(label)
        await asyncio.sleep(down_for)
        await self.restart(label)

    def stop(self, label: str) -> None:
        self.procs.pop(label).stop()


@asynccontextmanager
async def stack(base: Settings, run_dir: Path, *, services: tuple[str, ...] = SERVICES, step_timeout: float = 3.0,
                env: dict[str, str] | None = None):
    """`env`: settings of this OMS's services (e.g. a short OMS_PICKUP_HOLD_SECONDS)."""
    suffix = uuid.uuid4().hex[:6]
    settings = base.model_copy(update={"pg_database": f"{base.pg_database}_{suffix}",
                                       "topic_prefix": f"{base.topic_prefix}{suffix}."})
    await prepare(settings)
    env = dict(os.environ, OMS_PG_DATABASE=settings.pg_database, OMS_TOPIC_PREFIX=settings.topic_prefix,
               OMS_SAGA_STEP_TIMEOUT_SECONDS=str(step_timeout), **(env or {}))
    oms = Stack(settings, env, run_dir)
    try:
        for name in services:
            proc = ServiceProcess(name, run_dir)
            oms.procs[name] = proc
            proc.start(env)
        for proc in oms.procs.values():
            await wait_started(proc)
        yield oms
    finally:
        await stop_all(oms.procs.values())
        await discard_topics(settings)
        conn = await asyncpg.connect(settings.admin_dsn("postgres"))
        await conn.execute(f'DROP DATABASE IF EXISTS "{settings.pg_database}" WITH (FORCE)')
        await conn.close()


async def settled_cleanly(oms: Stack, done: Callable[[asyncpg.Connection, invariants.Report], Awaitable[bool]],
                          *, timeout: float, interval: float, what: str) -> invariants.Report:
    """The invariant checker's report once nothing is in flight, nothing is violated and `done` says the test's
    own condition holds (the report printed if that never comes); then the exactly-once checks of the topics."""
    conn = await asyncpg.connect(oms.settings.admin_dsn())
    try:
        async def clean():
            report = await invariants.check(conn)
            return report if not report.in_flight and report.ok and await done(conn, report) else None

        try:
            report = await eventually(clean, timeout=timeout, interval=interval, what=what)
        except TimeoutError as timed_out:
            raise TimeoutError(f"{timed_out}; {await _unsettled(conn)}") from None
    finally:
        await conn.close()
    assert await invariants.check_topics(oms.settings) == []
    return report


async def _unsettled(conn: asyncpg.Connection) -> str:
    """On one line (a CI summary shows the first): the report, and the orders in flight longest with their holds,
    parts (location and status), step attempts and deadline, inventory's reservation and last messages (what is
    enough to tell a lost message from an answer never given)."""
    report = "; ".join(str(await invariants.check(conn)).splitlines())
    stuck = await conn.fetch(
        """SELECT s.order_id, s.state, s.attempts, round(extract(epoch FROM s.deadline_at - now())) AS deadline_in,
                  ARRAY(SELECT h->>'reason' FROM jsonb_array_elements(s.holds) h) AS holds,
                  ARRAY(SELECT p->>'location_id' || ' ' || (p->>'status') FROM jsonb_array_elements(s.parts) p)
                      AS parts,
                  (SELECT r.status FROM inventory.reservations r WHERE r.order_id = s.order_id) AS reservation,
                  ARRAY(SELECT replace(t.direction || ' ' || t.message_type, 'oms.', '')
                        FROM capture.order_timeline t
                        WHERE t.order_id = s.order_id ORDER BY t.entry_id DESC LIMIT 60) AS latest
           FROM capture.order_sagas s WHERE s.state <> ALL($1::text[]) ORDER BY s.state_since LIMIT 5""",
        list(invariants.SETTLED))
    return report + "".join(f"; order {r['order_id']} {r['state']} (attempt {r['attempts']}, deadline in "
                            f"{r['deadline_in']} s) holds {r['holds']} parts {r['parts']} "
                            f"reservation {r['reservation']} latest first {_counted(r['latest'])[:12]}" for r in stuck)


def _counted(messages: list[str]) -> list[str]:
    """Each message once, latest first, with how many times it came: an edit refused again and again would
    otherwise hide the messages that tell why an order is stuck."""
    counts = Counter(messages)
    return [f"{message} x{counts[message]}" if counts[message] > 1 else message for message in dict.fromkeys(messages)]
