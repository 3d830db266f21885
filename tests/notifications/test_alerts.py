"""Operator alerts (CONTRACT §6): what fires, with which figures, to whom, and how often."""

from __future__ import annotations

import importlib
import logging
import time
from datetime import datetime, timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from imports.models import ImportRun
from notifications import alerts
from notifications.alerts import alert_window, alerts_check
from notifications.models import Notification
from notifications.tasks import check_alerts
from syncplatform.celery import app as celery_app
from syncplatform.deadletters.models import DeadLetter
from syncplatform.outbox.models import OutboxMessage
from syncplatform.outbox.publisher import publish
from tests.support.http_server import json_response, local_http_server
from tests.support.processes import Beat, PlatformProcess, process_env
from tests.support.redis_server import free_port
from tests.support.waiting import wait_until

OPS = ["ops@shop.example", "oncall@shop.example"]
HOOK = "http://127.0.0.1:9/alerts"
WINDOW = 3600


@pytest.fixture
def alerting(settings) -> None:
    """Two alert addresses and a webhook, and the default thresholds stated for the tests."""
    settings.ALERT_EMAILS = OPS
    settings.ALERT_WEBHOOK_URL = HOOK
    settings.ALERT_WINDOW_SECONDS = WINDOW
    settings.ALERT_QUEUE_LAG_SLO_SECONDS = {"high": 60, "default": 300, "low": 1800}
    settings.ALERT_OUTBOX_AGE_SECONDS = 120
    settings.ALERT_IMPORT_STALL_SECONDS = 1800


def sent(condition: str) -> list[Notification]:
    """The alert notifications recorded for one condition, oldest first."""
    return list(
        Notification.objects.filter(dedup_key__startswith=f"alert:{condition}:").order_by("pk")
    )


def later_in_window(now: datetime) -> datetime:
    """The last second of `now`'s window: a later check that must still be quiet."""
    return alert_window(now).end - timedelta(seconds=1)


def next_window(now: datetime) -> datetime:
    return alert_window(now).end + timedelta(seconds=1)


def stalled_run(
    idle: timedelta, status: str = ImportRun.Status.RUNNING, now: datetime | None = None
) -> ImportRun:
    moved = (now or timezone.now()) - idle
    return ImportRun.objects.create(
        file="imports/catalog.csv",
        original_filename="catalog.csv",
        file_sha256="0" * 64,
        status=status,
        total_rows=100_000,
        processed_rows=12_000,
        batch_count=100,
        batches_done=12,
        started_at=moved,
        progress_at=moved,
    )


def dead_letter(task_name: str, reason: str = DeadLetter.Reason.EXHAUSTED) -> DeadLetter:
    return DeadLetter.objects.create(
        task_name=task_name,
        queue="low",
        reason=reason,
        error="Traceback …\nOperationalError: could not connect to server",
        attempts=5,
    )


def publish_to(queue: str) -> None:
    """A message waiting in `queue`, published by the outbox as every real one is."""
    publish(OutboxMessage.objects.create(task_name="tests.noop", queue=queue, dedup_key="t"))


def start_alerting_relay(start_relay, redis_url: str, receiver_url: str, **env: str) -> None:
    """A relay process on a broker of its own, sending its alerts to a local webhook only."""
    start_relay(
        REDIS_URL=redis_url, ALERT_EMAILS="", ALERT_WEBHOOK_URL=f"{receiver_url}/alerts", **env
    )


# --- Queue lag and the broker ------------------------------------------------------------


@pytest.mark.django_db
def test_a_queue_past_its_slo_is_reported_with_its_figures(alerting, broker):
    # Given a message waiting in `high` and another in `low`
    publish_to("high")
    publish_to("low")
    publish_to("low")

    # When they have waited 90 s: over the 60 s SLO of `high`, well under the 30 min of `low`
    alerts_check(now=timezone.now() + timedelta(seconds=90))

    # Then `high` is reported, to every recipient, and `low` is not
    notifications = sent("queue_lag")
    assert {(n.channel, n.recipient) for n in notifications} == {
        ("email", OPS[0]),
        ("email", OPS[1]),
        ("webhook", HOOK),
    }
    assert {n.dedup_key for n in notifications} == {notifications[0].dedup_key}
    alert = notifications[0]
    assert alert.subject.startswith("[syncplatform] Queue high is lagging: oldest message waited")
    assert "(SLO 60 s)" in alert.subject
    assert "python manage.py ping_queues --queue high" in alert.body
    assert '"Queue lag growing"' in alert.body
    figures = alert.data["figures"]
    assert figures["queue"] == "high"
    assert figures["depth"] == 1
    assert figures["slo_seconds"] == 60
    assert 89 <= figures["oldest_age_seconds"] <= 120
    assert alert.data["runbook"] == "docs/operations.md#queue-lag-growing"


@pytest.mark.django_db
def test_a_queue_within_its_slo_is_not_reported(alerting, broker):
    publish_to("high")
    alerts_check(now=timezone.now() + timedelta(seconds=30))
    assert sent("queue_lag") == []
    assert sent("broker_unreachable") == []


@pytest.mark.django_db
def test_queue_lag_is_reported_once_per_window_and_again_in_the_next(alerting, broker):
    publish_to("high")
    now = timezone.now() + timedelta(seconds=90)

    alerts_check(now=now)
    alerts_check(now=later_in_window(now))
    assert len(sent("queue_lag")) == 3  # two emails and the webhook, once

    alerts_check(now=next_window(now))
    keys = [n.dedup_key for n in sent("queue_lag")]
    assert len(keys) == 6
    assert len(set(keys)) == 2


@pytest.mark.django_db
def test_messages_sent_outside_the_outbox_count_for_queue_lag_from_their_own_publish(
    alerting, broker
):
    # Given at the head of `default` a message sent as beat sends it, not through the outbox,
    celery_app.send_task("notifications.check_alerts", queue="default")
    # and in `low` a retry, which carries its first message's headers (sent two hours ago)
    celery_app.send_task("tests.noop", queue="low", headers={"published_at": time.time() - 7200})

    # When 400 s later: past the 5 min SLO of `default`, within the 30 min of `low`
    alerts_check(now=timezone.now() + timedelta(seconds=400))

    # Then `default` lags (its head does not hide it), and `low` counts from the retry's publish
    assert {n.data["about"] for n in sent("queue_lag")} == {"default"}


@pytest.mark.django_db
def test_the_lag_of_the_queue_alerts_are_delivered_on_is_sent_by_the_check_itself(
    alerting, broker, settings
):
    with local_http_server(lambda request: json_response(200, {})) as receiver:
        settings.ALERT_EMAILS = []
        settings.ALERT_WEBHOOK_URL = f"{receiver.url}/alerts"
        # Given messages waiting in `default` (which carries the alerts' deliveries) and `high`
        publish_to("default")
        publish_to("high")

        # When the check finds both past their SLO
        alerts_check(now=timezone.now() + timedelta(seconds=400))

        # Then default's alert was posted by the check, as its delivery task could wait forever;
        # high's is left to its delivery task on `default`
        [request] = receiver.requests
    assert request.json()["data"]["about"] == "default"
    assert {n.data["about"]: n.status for n in sent("queue_lag")} == {
        "default": "sent",
        "high": "pending",
    }


@pytest.mark.django_db
def test_a_broker_that_does_not_answer_is_reported(alerting, monkeypatch):
    # Given a broker address where nothing listens
    monkeypatch.setattr(celery_app.conf, "broker_url", f"redis://127.0.0.1:{free_port()}/0")

    alerts_check()

    notifications = sent("broker_unreachable")
    assert len(notifications) == 3
    alert = notifications[0]
    assert alert.subject == "[syncplatform] Broker (Redis) did not answer"
    assert '"Broker (Redis) down"' in alert.body
    assert "/readyz" in alert.body
    assert alert.data["figures"]["error"]
    assert alert.data["runbook"] == "docs/operations.md#broker-redis-down"
    assert sent("queue_lag") == []


def test_the_relay_sends_the_broker_alert_itself_while_redis_is_down(
    transactional_db, settings, private_redis, start_relay
):
    # Given a relay on a broker of its own, with an alert webhook, and the broker down
    settings.OUTBOX_FAST_PATH = False
    with local_http_server(lambda request: json_response(200, {})) as receiver:
        start_alerting_relay(
            start_relay,
            private_redis.url,
            receiver.url,
            ALERT_BROKER_DOWN_SECONDS="0",
        )
        private_redis.stop()
        # When work arrives that the relay cannot publish
        OutboxMessage.objects.create(task_name="tests.noop", queue="default", dedup_key="t")

        # Then the relay posts the alert itself (no worker could: they need Redis), once
        request = wait_until(
            lambda: next(iter(receiver.requests), None), timeout=60, what="alert posted"
        )
        wait_until(
            lambda: OutboxMessage.objects.filter(publish_attempts__gte=3).exists(),
            timeout=60,
            what="two more failed passes",
        )
        assert len(receiver.requests) == 1
    payload = request.json()
    assert payload["subject"] == "[syncplatform] Broker (Redis) did not answer"
    assert payload["body"].startswith("The outbox relay has not reached Redis for")
    assert payload["data"]["condition"] == "broker_unreachable"
    assert Notification.objects.get(channel="webhook").status == "sent"


def test_an_idle_relay_notices_the_outage_and_sends_the_broker_alert(
    transactional_db, private_redis, start_relay
):
    # Given a relay with nothing to publish, and its broker down
    with local_http_server(lambda request: json_response(200, {})) as receiver:
        private_redis.stop()
        start_alerting_relay(
            start_relay,
            private_redis.url,
            receiver.url,
            ALERT_BROKER_DOWN_SECONDS="1",
            OUTBOX_RELAY_BROKER_PROBE_SECONDS="0.2",
        )
        # Then its probes find the outage and it posts the alert itself
        request = wait_until(
            lambda: next(iter(receiver.requests), None), timeout=60, what="alert posted"
        )
    assert request.json()["data"]["condition"] == "broker_unreachable"
    assert OutboxMessage.objects.filter(task_name="notifications.deliver_notification").exists()


def test_with_no_worker_at_all_the_relay_alerts_the_queues_that_pile_up(
    transactional_db, private_redis, start_relay
):
    # Given a relay on a broker of its own, with an alert webhook, and no worker anywhere to
    # run the alerts' check
    with local_http_server(lambda request: json_response(200, {})) as receiver:
        start_alerting_relay(
            start_relay,
            private_redis.url,
            receiver.url,
            ALERT_QUEUE_LAG_SLO_HIGH="1",
            ALERT_QUEUE_LAG_SLO_DEFAULT="3",
            ALERT_CHECK_SECONDS="1",
            OUTBOX_RELAY_BROKER_PROBE_SECONDS="0.2",
        )
        # When it publishes work to `high` and to `default` that nobody consumes
        OutboxMessage.objects.create(task_name="tests.noop", queue="high", dedup_key="h")
        OutboxMessage.objects.create(task_name="tests.noop", queue="default", dedup_key="d")

        # Then, past each SLO and two check intervals (when a worker's check would have
        # announced it), the relay posts the queue's alert itself; `default`'s comes ~2 s after
        # `high`'s, and the relay's probes in between did not post `high` again
        wait_until(lambda: len(receiver.requests) >= 2, timeout=60, what="two alerts posted")
        posted = [request.json()["data"] for request in receiver.requests]
    assert [(data["condition"], data["about"]) for data in posted] == [
        ("queue_lag", "high"),
        ("queue_lag", "default"),
    ]
    assert posted[0]["figures"]["oldest_age_seconds"] >= 3  # SLO 1 s + 2 x 1 s (rounded)
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}


# --- Outbox backlog ----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_old_unpublished_outbox_row_is_reported(alerting, broker):
    now = timezone.now()
    OutboxMessage.objects.create(
        task_name="imports.process_batch",
        queue="low",
        created_at=now - timedelta(seconds=200),
        publish_attempts=4,
        last_error="Traceback …\nConnectionError: Error 111 connecting to redis:6379",
    )
    OutboxMessage.objects.create(task_name="imports.process_batch", queue="low", created_at=now)

    alerts_check(now=now)

    [alert, *_] = notifications = sent("outbox_backlog")
    assert len(notifications) == 3
    assert alert.subject == (
        "[syncplatform] Outbox not publishing: oldest row waiting 3 min 20 s (2 unpublished)"
    )
    assert "imports.process_batch for queue low" in alert.body
    assert "ConnectionError: Error 111 connecting to redis:6379" in alert.body
    assert "run_outbox_relay --once" in alert.body
    figures = alert.data["figures"]
    assert (figures["backlog"], figures["threshold_seconds"], figures["publish_attempts"]) == (
        2,
        120,
        4,
    )
    assert figures["oldest_age_seconds"] == pytest.approx(200, abs=1)


@pytest.mark.django_db
def test_a_young_or_published_outbox_is_not_reported(alerting, broker):
    now = timezone.now()
    OutboxMessage.objects.create(task_name="t", queue="low", created_at=now - timedelta(seconds=60))
    OutboxMessage.objects.create(
        task_name="t", queue="low", created_at=now - timedelta(hours=2), published_at=now
    )
    alerts_check(now=now)
    assert sent("outbox_backlog") == []


# --- Dead letters ------------------------------------------------------------------------


@pytest.mark.django_db
def test_new_dead_letters_are_named_by_task_once_per_window(alerting, broker):
    # Given two dead letters of one task and one of another
    dead_letter("imports.process_batch")
    dead_letter("imports.process_batch")
    dead_letter("erp_connectors.apply_events", DeadLetter.Reason.PERMANENT)
    now = timezone.now()

    alerts_check(now=now)

    [alert, *_] = notifications = sent("dead_letters")
    assert len(notifications) == 3
    assert alert.subject == (
        "[syncplatform] 3 new dead letter(s): imports.process_batch (2), "
        "erp_connectors.apply_events (1)"
    )
    assert "OperationalError: could not connect to server" in alert.body
    assert "/admin/deadletters/deadletter/?status__exact=open" in alert.body
    assert alert.data["figures"]["by_task"] == [
        {"task": "imports.process_batch", "reason": "exhausted", "count": 2},
        {"task": "erp_connectors.apply_events", "reason": "permanent", "count": 1},
    ]

    # When another letter arrives in the same window: nothing more now…
    dead_letter("notifications.deliver_notification")
    alerts_check(now=later_in_window(now))
    assert len(sent("dead_letters")) == 3

    # …and the next window names only that one
    alerts_check(now=next_window(now))
    latest = sent("dead_letters")[-1]
    assert len(sent("dead_letters")) == 6
    assert latest.subject == (
        "[syncplatform] 1 new dead letter(s): notifications.deliver_notification (1)"
    )

    # With nothing new, the window after is quiet
    alerts_check(now=next_window(next_window(now)))
    assert len(sent("dead_letters")) == 6


@pytest.mark.django_db
def test_dead_letters_already_resolved_are_not_reported(alerting, broker):
    letter = dead_letter("imports.process_batch")
    DeadLetter.objects.filter(pk=letter.pk).update(status=DeadLetter.Status.REQUEUED)
    alerts_check()
    assert sent("dead_letters") == []


# --- Imports with no progress ------------------------------------------------------------


@pytest.mark.django_db
def test_a_running_import_with_no_progress_is_reported(alerting, broker):
    now = timezone.now()
    run = stalled_run(timedelta(minutes=45), now=now)

    alerts_check(now=now)

    [alert, *_] = notifications = sent("import_stalled")
    assert len(notifications) == 3
    assert alert.subject == (
        f"[syncplatform] Import #{run.pk} (catalog.csv) has made no progress for 45 min"
    )
    assert "12000 of 100000 rows processed, 12 of 100 batches done" in alert.body
    assert f"/admin/imports/importrun/{run.pk}/change/" in alert.body
    assert "(threshold 30 min)" in alert.body
    figures = alert.data["figures"]
    assert figures["import_id"] == run.pk
    assert figures["idle_seconds"] == pytest.approx(45 * 60, abs=2)
    assert alert.dedup_key == f"alert:import_stalled:{run.pk}:{alert_window(now).number}"


@pytest.mark.django_db
def test_imports_that_progress_or_finished_are_not_reported(alerting, broker):
    stalled_run(timedelta(minutes=20))
    stalled_run(timedelta(hours=5), status=ImportRun.Status.COMPLETED)
    alerts_check()
    assert sent("import_stalled") == []


@pytest.mark.django_db
def test_a_stalled_import_is_reported_once_per_window_and_again_in_the_next(alerting, broker):
    stalled_run(timedelta(hours=1))
    now = timezone.now()
    alerts_check(now=now)
    alerts_check(now=later_in_window(now))
    assert len(sent("import_stalled")) == 3

    alerts_check(now=next_window(now))
    assert len(sent("import_stalled")) == 6


# --- Recipients, schedule, delivery ------------------------------------------------------


@pytest.mark.django_db
def test_with_no_recipients_nothing_is_recorded_and_it_is_said_once(settings, broker, caplog):
    settings.ALERT_EMAILS = []
    settings.ALERT_WEBHOOK_URL = ""
    stalled_run(timedelta(hours=2))
    alerts._log_alerts_off.cache_clear()

    with caplog.at_level(logging.INFO, logger="notifications.alerts"):
        assert alerts_check() == []
        assert alerts_check() == []

    assert not Notification.objects.exists()
    assert [r.getMessage() for r in caplog.records if "alerts are off" in r.getMessage()] == [
        "operator alerts are off: set ALERT_EMAILS or ALERT_WEBHOOK_URL to receive them"
    ]


def queue_of(task_name: str) -> str:
    return celery_app.amqp.router.route({}, task_name)["queue"].name


@pytest.mark.django_db
def test_beat_runs_the_check_on_high_and_again_on_default():
    # The check is routed to `high`, away from `default`, whose lag it must report…
    task = PeriodicTask.objects.get(name="Operator alerts")
    assert task.task == check_alerts.name == "notifications.check_alerts"
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (60, "seconds")
    assert task.queue is None
    assert queue_of(task.task) == "high"
    # …and beat sends it to `default` as well, to report `high` while its worker is down
    second = PeriodicTask.objects.get(name="Operator alerts (default queue)")
    assert (second.task, second.queue, second.enabled) == (task.task, "default", True)
    assert (second.interval.every, second.expire_seconds) == (60, 60)
    # Notifications, operator alerts included, are still delivered on `default` (CONTRACT §5)
    assert queue_of("notifications.deliver_notification") == "default"

    # Running the migration again keeps the two entries, with an operator's changes
    PeriodicTask.objects.filter(pk=second.pk).update(enabled=False)
    PeriodicTask.objects.filter(pk=task.pk).update(queue="low")
    migration = importlib.import_module("notifications.migrations.0003_alerts_check_on_two_queues")
    migration.schedule(django_apps, None)
    assert PeriodicTask.objects.filter(task=task.task).count() == 2
    assert PeriodicTask.objects.get(pk=second.pk).enabled is False
    assert PeriodicTask.objects.get(pk=task.pk).queue == "low"


@pytest.mark.integration
def test_the_workers_check_and_the_webhook_receives_the_json_alert(
    start_worker, start_relay, settings
):
    # Given a receiver for the alert webhook, and an import that stopped moving an hour ago
    with local_http_server(lambda request: json_response(200, {})) as receiver:
        start_relay()
        for queue in ("high", "default"):
            start_worker(queue, ALERT_EMAILS="", ALERT_WEBHOOK_URL=f"{receiver.url}/alerts")
        run = stalled_run(timedelta(hours=1))

        # When beat's message for the check reaches the `high` worker (its route), which
        # records the alert, and the `default` worker delivers it
        celery_app.send_task("notifications.check_alerts")

        # Then the receiver gets the alert as JSON
        request = wait_until(
            lambda: next(iter(receiver.requests), None), timeout=60, what="alert posted"
        )
    assert request.path == "/alerts"
    payload = request.json()
    assert payload["subject"].startswith(f"[syncplatform] Import #{run.pk} (catalog.csv)")
    assert "Runbook: docs/operations.md" in payload["body"]
    data = payload["data"]
    assert (data["kind"], data["condition"], data["about"]) == (
        "operator_alert",
        "import_stalled",
        str(run.pk),
    )
    assert data["figures"]["processed_rows"] == 12_000
    assert data["runbook"] == "docs/operations.md#import-run-with-no-progress"
    assert data["window"]["seconds"] == 3600
    [notification] = Notification.objects.all()
    wait_until(
        lambda: Notification.objects.filter(pk=notification.pk, status="sent").exists(),
        what="marked sent",
    )


def checks_done(worker: PlatformProcess) -> int:
    return sum(
        "notifications.check_alerts[" in line and "succeeded" in line
        for line in worker.log().splitlines()
    )


def start_beat_checking_every_second(processes: list[PlatformProcess], env: dict[str, str]) -> Beat:
    """Beat with the alert checks as the migrations install them, every second here."""
    for name in ("0002_operator_alerts_schedule", "0003_alerts_check_on_two_queues"):
        importlib.import_module(f"notifications.migrations.{name}").schedule(django_apps, None)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    checks = PeriodicTask.objects.filter(task="notifications.check_alerts")
    assert checks.update(interval=every_second) == 2
    beat = Beat(process_env(**env))
    processes.append(beat)
    return beat.start()


def alert_env(receiver_url: str, **slos: str) -> dict[str, str]:
    return {
        "ALERT_EMAILS": "",
        "ALERT_WEBHOOK_URL": f"{receiver_url}/alerts",
        # One window for the whole test, so "once per window" means once here.
        "ALERT_WINDOW_SECONDS": str(10**9),
        **slos,
    }


@pytest.mark.integration
def test_with_no_default_worker_its_lag_is_alerted_by_the_high_worker(
    start_worker, processes: list[PlatformProcess]
):
    with local_http_server(lambda request: json_response(200, {})) as receiver:
        env = alert_env(receiver.url, ALERT_QUEUE_LAG_SLO_DEFAULT="2")
        # Given beat, and a worker for `high` only: `default`'s worker is down
        worker = start_worker("high", **env)
        start_beat_checking_every_second(processes, env)

        # When beat's checks for `default` (sent by beat, not the outbox) wait there past
        # its SLO, then the high worker's check reports it and posts the alert itself
        request = wait_until(
            lambda: next(iter(receiver.requests), None), timeout=60, what="alert posted"
        )
        payload = request.json()
        assert payload["data"]["condition"] == "queue_lag"
        assert payload["data"]["about"] == "default"
        assert payload["data"]["figures"]["oldest_age_seconds"] > 2

        # And the checks that follow send nothing more in the window
        checks = checks_done(worker)
        wait_until(
            lambda: checks_done(worker) >= checks + 2, timeout=60, what="two more checks on high"
        )
        assert len(receiver.requests) == 1
    assert Notification.objects.get(channel="webhook").status == "sent"


@pytest.mark.integration
def test_with_no_high_worker_its_lag_is_alerted_by_the_default_worker(
    start_worker, start_relay, processes: list[PlatformProcess]
):
    with local_http_server(lambda request: json_response(200, {})) as receiver:
        env = alert_env(receiver.url, ALERT_QUEUE_LAG_SLO_HIGH="2")
        # Given beat, a relay, and a worker for `default` only: `high`'s worker is down
        start_relay(**env)
        start_worker("default", **env)
        start_beat_checking_every_second(processes, env)

        # When beat's checks for `high` wait there past its SLO, then the check beat also
        # sends to `default` reports it, delivered as any notification
        request = wait_until(
            lambda: next(iter(receiver.requests), None), timeout=60, what="alert posted"
        )
    assert (request.json()["data"]["condition"], request.json()["data"]["about"]) == (
        "queue_lag",
        "high",
    )
