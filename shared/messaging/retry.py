"""Telling transient failures (retry with backoff) from permanent ones (dead-letter or set aside), the backoff
itself, and the one loop every background worker (outbox relay, saga deadlines, retention) runs in."""

import asyncio
import random
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka.errors import KafkaError, KafkaTimeoutError

from shared.logging import get_logger

log = get_logger(__name__)

_TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.QueryCanceledError,  # statement timeout
    KafkaTimeoutError,
)


def is_transient(error: BaseException) -> bool:
    """Worth retrying: an outage or a timeout. Kafka marks its own retriable errors (connection, leadership);
    a message too large or an invalid record is not, and retrying it would only block what follows."""
    return isinstance(error, _TRANSIENT) or (isinstance(error, KafkaError) and error.retriable)


class Backoff:
    """Exponential backoff with jitter: 0.1 s doubling to 5 s. Never a tight loop."""

    def __init__(self, first: float = 0.1, cap: float = 5.0):
        self.first = first
        self.cap = cap
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay * random.uniform(0.5, 1.0))
        self.delay = min(self.delay * 2, self.cap)


Worker = Callable[[], Awaitable[None]]


async def run_forever(name: str, work: Worker, on_failure: Callable[[BaseException], None] = lambda _: None) -> None:
    """Run `work` again whenever it fails, after a backoff, until cancelled. `work` loops on its own while
    healthy; a failure of any kind (an outage, a bug) must never end a worker the service depends on."""
    backoff = Backoff()
    while True:
        try:
            await work()
            backoff.reset()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            on_failure(error)
            if is_transient(error):
                log.warning("worker.retry", worker=name, error=repr(error))
            else:
                log.exception("worker.failed", worker=name)
            await backoff.sleep()


async def run_in_batches(name: str, step: Callable[[], Awaitable[int]], batch: int, interval: float) -> None:
    """A background worker that works through what is due a batch at a time: `step` handles at most `batch` items
    and says how many it did; it runs again at once after a full batch, else after `interval`; in run_forever."""
    async def drain() -> None:
        while True:
            if await step() < batch:
                await asyncio.sleep(interval)

    await run_forever(name, drain)
