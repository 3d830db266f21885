"""Workers keep their database connection across tasks, as the web does across requests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from syncplatform.celery import app as celery_app
from tests.support.processes import Worker
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration]


def test_a_pool_process_reuses_one_database_connection_for_many_tasks(
    start_worker: Callable[..., Worker], broker: redis.Redis
) -> None:
    # Given one worker process
    start_worker("default", concurrency=1)

    # When it runs twenty tasks that each query the database
    for _ in range(20):
        celery_app.send_task("tests.query_database", kwargs={"key": "db-conn"}, queue="default")
    wait_until(lambda: broker.llen("db-conn") == 20, timeout=60, what="twenty tasks ran")

    # Then the pool process opened one connection for all of them
    records = [entry.decode().split(":") for entry in broker.lrange("db-conn", 0, -1)]
    assert len({pid for pid, _ in records}) == 1
    assert {int(opened) for _, opened in records} == {1}
