"""Queue depth and oldest-message age, read from Redis for /metrics and the operator alerts."""

from __future__ import annotations

import time

import pytest

from syncplatform.celery import app as celery_app
from syncplatform.outbox.models import OutboxMessage
from syncplatform.outbox.publisher import publish
from syncplatform.queue_state import BrokerUnavailable, QueueState, queue_states
from tests.foundation.test_metrics import scrape
from tests.support.redis_server import free_port


def publish_to(queue: str) -> None:
    publish(OutboxMessage.objects.create(task_name="tests.noop", queue=queue, dedup_key="t"))


@pytest.mark.django_db
def test_depth_and_age_of_the_oldest_message_per_queue(broker):
    publish_to("low")
    publish_to("low")
    published = time.time()

    states = queue_states(now=published + 42)

    assert [(s.name, s.depth) for s in states] == [("high", 0), ("default", 0), ("low", 2)]
    assert states[0] == QueueState("high", 0, 0.0)
    assert states[2].oldest_age == pytest.approx(42, abs=2)


@pytest.mark.django_db
def test_metrics_show_the_queues_as_read(client, broker):
    publish_to("high")
    samples = scrape(client)
    assert samples[("syncplatform_queue_depth", (("queue", "high"),))] == 1
    assert samples[("syncplatform_queue_depth", (("queue", "low"),))] == 0
    assert samples[("syncplatform_queue_oldest_age_seconds", (("queue", "high"),))] >= 0
    assert samples[("syncplatform_broker_up", ())] == 1


@pytest.mark.django_db
def test_a_broker_that_does_not_answer(client, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(BrokerUnavailable):
        queue_states()
    samples = scrape(client)
    assert samples[("syncplatform_broker_up", ())] == 0
    assert not [key for key in samples if key[0] == "syncplatform_queue_depth"]
