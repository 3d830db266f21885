"""Shared fixtures: the broker, real worker and relay processes, and a private Redis.

Integration tests use `transactional_db` so that what the test writes is committed and
visible to the worker processes, which run on the same test database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from django.conf import settings

from tests.support.processes import PlatformProcess, Relay, Web, Worker, process_env
from tests.support.redis_server import RedisServer, free_port

# Fast retries for the tests of the retry policy; production defaults are 10 s / 10 min.
FAST_RETRY_ENV = {
    "RETRY_BACKOFF_BASE": "0.2",
    "RETRY_BACKOFF_CAP": "1.0",
    "RETRY_MAX_ATTEMPTS": "4",
}


@pytest.fixture(autouse=True)
def outbox_fast_path(request: pytest.FixtureRequest, settings) -> None:
    """Work the test process records itself is published at its commit (the fast path).

    Tests that start no relay still see their tasks run. The processes the tests start (web,
    relay) keep the defaults, where on PostgreSQL the relay publishes everything; tests
    marked `default_outbox` keep the defaults in the test process too.
    """
    if request.node.get_closest_marker("default_outbox") is None:
        settings.OUTBOX_FAST_PATH = True


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The test broker, emptied before the test so no stale message reaches a worker."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def processes() -> Iterator[list[PlatformProcess]]:
    """Every process a test starts; all are stopped at teardown, whatever happened."""
    started: list[PlatformProcess] = []
    yield started
    for process in reversed(started):
        process.kill()


@pytest.fixture
def start_worker(
    transactional_db: None, broker: redis.Redis, processes: list[PlatformProcess]
) -> Callable[..., Worker]:
    """Start a real Celery worker on the test database and broker."""

    def start(queues: str = "high,default,low", concurrency: int = 1, **env: str) -> Worker:
        worker = Worker(queues, process_env(**FAST_RETRY_ENV, **env), concurrency)
        processes.append(worker)
        return worker.start()

    return start


@pytest.fixture
def start_relay(
    transactional_db: None, broker: redis.Redis, processes: list[PlatformProcess]
) -> Callable[..., Relay]:
    """Start a real outbox relay process (no grace period, fast polling)."""

    def start(*extra: str, **env: str) -> Relay:
        defaults = {"OUTBOX_RELAY_GRACE_SECONDS": "0", "OUTBOX_RELAY_POLL_SECONDS": "0.1"}
        relay = Relay(process_env(**{**defaults, **env}), *extra)
        processes.append(relay)
        return relay.start()

    return start


@pytest.fixture
def start_web(
    transactional_db: None, broker: redis.Redis, processes: list[PlatformProcess]
) -> Callable[..., Web]:
    """Start gunicorn serving the platform on a free port, on the test database."""

    def start(**env: str) -> Web:
        web = Web(process_env(**env), free_port())
        processes.append(web)
        return web.start()

    return start


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, to stop and restart without touching anyone else."""
    server = RedisServer().start()
    yield server
    server.stop()
