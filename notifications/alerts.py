"""Operator alerts (CONTRACT §6): what is wrong with the platform itself.

One selector per condition returns the alerts firing now; `alerts_check` records a
notification per recipient for each. A notification's dedup key names the condition, what it
is about and the window, so Notification's unique (dedup_key, channel, recipient) is what
keeps each condition to at most one alert per window, whichever process runs the check.

An alert is delivered by the `notifications.deliver_notification` task, except when that task
could not run: the lag of the queue it travels on, and a broker outage, are sent at once by
the process that found them.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from imports.models import ImportRun
from syncplatform.deadletters.models import DeadLetter
from syncplatform.outbox.models import OutboxMessage
from syncplatform.outbox.publisher import route_for
from syncplatform.queue_state import BrokerUnavailable, QueueState, queue_states
from syncplatform.retry import PermanentError, TransientError

from .models import Notification
from .services import notification_create, notification_deliver

logger = logging.getLogger(__name__)

SUBJECT_PREFIX = "[syncplatform] "
GUIDE = "docs/operations.md"
DEAD_LETTER_KEY_PREFIX = "alert:dead_letters:"
DELIVERY_TASK = "notifications.deliver_notification"
# What a lagging queue holds up, for the reader who does not know the routing by heart.
QUEUE_PURPOSE = {
    "high": "webhook applies: the shop's stock and prices lag behind the ERPs",
    "default": "import starts and finishes and notifications, these alerts included",
    "low": "import batches, reconciliation and clean-up: imports take longer",
}


class Window(NamedTuple):
    number: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Alert:
    """One firing condition, worded for the operator who reads it at 3 a.m."""

    # queue_lag, broker_unreachable, outbox_backlog, dead_letters, import_stalled, and
    # reconciliation_drift (erp_connectors/reconciliation.py)
    condition: str
    about: str  # what it concerns: a queue, an import run's id, "redis", "outbox", "all"
    subject: str
    body: str
    runbook: str  # the section's anchor in docs/operations.md
    figures: dict[str, Any]

    def dedup_key(self, window: Window) -> str:
        return f"alert:{self.condition}:{self.about}:{window.number}"

    def data(self, *, window: Window, now: datetime) -> dict[str, Any]:
        """The JSON a webhook receiver gets under `data`, to route on."""
        return {
            "kind": "operator_alert",
            "condition": self.condition,
            "about": self.about,
            "figures": self.figures,
            "runbook": f"{GUIDE}#{self.runbook}",
            "checked_at": now.isoformat(),
            "window": {
                "start": window.start.isoformat(),
                "end": window.end.isoformat(),
                "seconds": settings.ALERT_WINDOW_SECONDS,
            },
        }


def alert_window(now: datetime) -> Window:
    """Return the clock-aligned window `now` falls in (each whole hour with 3600 s)."""
    seconds = settings.ALERT_WINDOW_SECONDS
    number = int(now.timestamp() // seconds)
    start = datetime.fromtimestamp(number * seconds, tz=UTC)
    return Window(number, start, start + timedelta(seconds=seconds))


def alerts_check(*, now: datetime | None = None) -> list[Alert]:
    """Evaluate every condition and notify each recipient of what fires; return what was new.

    Safe to run often and from several processes at once: within a window, a condition
    already announced records nothing. Does nothing (and says so once) with no recipients.
    """
    recipients = alert_recipients()
    if not recipients:
        _log_alerts_off()
        return []
    now = now or timezone.now()
    window = alert_window(now)
    delivery_queue = route_for(DELIVERY_TASK)
    new: list[Alert] = []
    for alert in alerts_firing(now=now):
        notifications = _announce(alert, recipients=recipients, window=window, now=now)
        if not notifications:
            continue
        new.append(alert)
        if alert.condition == "queue_lag" and alert.about == delivery_queue:
            # Its delivery task would wait in the very queue that is stuck (its worker may be
            # dead): send it from here. The queued task finds it sent later.
            _send_now(notifications)
    return new


def alert_announce(alert: Alert, *, now: datetime | None = None) -> list[Notification]:
    """Record an alert raised outside the check (e.g. reconciliation drift) for the operators.

    Same recipients, dedup key and delivery as the check's alerts; at most once per window
    for the same condition and `about`. Call it in the transaction of the fact it announces.
    Returns the notifications new now (none without recipients).
    """
    recipients = alert_recipients()
    if not recipients:
        _log_alerts_off()
        return []
    now = now or timezone.now()
    return _announce(alert, recipients=recipients, window=alert_window(now), now=now)


def on_broker_unavailable(sender: object, error: str, down_seconds: float, **kwargs: Any) -> None:
    """Receiver of the relay's broker_unavailable signal."""
    broker_outage_announce(error=error, down_seconds=down_seconds)


def broker_outage_announce(*, error: str, down_seconds: float, now: datetime | None = None) -> None:
    """Alert, and send at once, that the relay cannot publish to Redis (CONTRACT §6).

    The relay calls this while Redis is down: the periodic check and the delivery tasks both
    travel through Redis and cannot run then, so the alert is sent from the caller's process.
    Its delivery task is queued as well, and finds it sent once Redis is back.
    """
    recipients = alert_recipients()
    if not recipients or down_seconds < settings.ALERT_BROKER_DOWN_SECONDS:
        return
    now = now or timezone.now()
    alert = _broker_alert(
        error, now=now, what=f"The outbox relay has not reached Redis for {_exact(down_seconds)}"
    )
    _send_now(_announce(alert, recipients=recipients, window=alert_window(now), now=now))


def on_queues_probed(sender: object, states: list[QueueState], **kwargs: Any) -> None:
    """Receiver of the relay's queues_probed signal."""
    queue_lag_watch(states=states)


def queue_lag_watch(*, states: list[QueueState], now: datetime | None = None) -> list[Alert]:
    """Alert, and send at once, queues whose lag no worker's check has announced.

    The check runs on `high` and again on `default`, so with every worker down (or stuck)
    nothing would report that work piles up. The relay, which needs no worker, reads the
    queues every OUTBOX_RELAY_BROKER_PROBE_SECONDS and calls this. It waits two check
    intervals past each SLO, so that while a worker still checks, its check announces first
    and this finds the alert already recorded for the window. Sent from the caller's
    process: the delivery tasks would wait in the stuck queues too.
    """
    recipients = alert_recipients()
    if not recipients:
        return []
    now = now or timezone.now()
    window = alert_window(now)
    new: list[Alert] = []
    for alert in _lag_alerts(states, grace=2 * settings.ALERT_CHECK_SECONDS):
        notifications = _announce(alert, recipients=recipients, window=window, now=now)
        if notifications:
            new.append(alert)
            _send_now(notifications)
    return new


def _send_now(notifications: list[Notification]) -> None:
    """Deliver in this process alerts whose delivery task cannot run (see the module doc)."""
    for notification in notifications:
        try:
            notification_deliver(notification_id=notification.pk)
        except (TransientError, PermanentError) as exc:
            # Its queued delivery task retries it once its queue moves again.
            logger.warning(
                "could not send %r to %s: %s", notification.subject, notification.recipient, exc
            )


def _announce(
    alert: Alert, *, recipients: list[tuple[str, str]], window: Window, now: datetime
) -> list[Notification]:
    """Record the alert for every recipient; return the notifications new in this window."""
    with transaction.atomic():
        created = [
            notification_create(
                channel=channel,
                recipient=recipient,
                subject=SUBJECT_PREFIX + alert.subject,
                body=alert.body,
                dedup_key=alert.dedup_key(window),
                data=alert.data(window=window, now=now),
            )
            for channel, recipient in recipients
        ]
    new = [notification for notification in created if notification is not None]
    if new:
        logger.warning("operator alert: %s", alert.subject)
    return new


def alerts_firing(*, now: datetime) -> list[Alert]:
    return [
        *queue_lag_alerts(now=now),
        *outbox_backlog_alerts(now=now),
        *dead_letter_alerts(now=now),
        *import_stalled_alerts(now=now),
    ]


def alert_recipients() -> list[tuple[str, str]]:
    """(channel, recipient) for every configured email address and the webhook URL."""
    pairs = [(Notification.Channel.EMAIL.value, email) for email in settings.ALERT_EMAILS]
    if settings.ALERT_WEBHOOK_URL:
        pairs.append((Notification.Channel.WEBHOOK.value, settings.ALERT_WEBHOOK_URL))
    return pairs


@functools.cache
def _log_alerts_off() -> None:
    # Once per process: a line every minute would drown the worker's log.
    logger.info("operator alerts are off: set ALERT_EMAILS or ALERT_WEBHOOK_URL to receive them")


# --- Conditions --------------------------------------------------------------------------


def queue_lag_alerts(*, now: datetime) -> list[Alert]:
    """One alert per queue whose oldest message has waited past its SLO; one if Redis is down."""
    try:
        states = queue_states(now=now.timestamp())
    except BrokerUnavailable as exc:
        return [_broker_alert(str(exc), now=now)]
    return _lag_alerts(states)


def _lag_alerts(states: list[QueueState], *, grace: float = 0.0) -> list[Alert]:
    """One alert per queue whose oldest message has waited more than its SLO plus `grace`."""
    slos = settings.ALERT_QUEUE_LAG_SLO_SECONDS
    return [
        _queue_alert(state, slos[state.name])
        for state in states
        if state.name in slos and state.oldest_age > slos[state.name] + grace
    ]


def _queue_alert(state: QueueState, slo: int) -> Alert:
    waited = _duration(state.oldest_age)
    return Alert(
        condition="queue_lag",
        about=state.name,
        subject=f"Queue {state.name} is lagging: oldest message waited {waited} "
        f"(SLO {_duration(slo)})",
        body=_body(
            f"The oldest message waiting in queue {state.name} has waited "
            f"{_exact(state.oldest_age)}; the queue's SLO is {_exact(slo)}.",
            f"Messages waiting: {state.depth}.",
            f"This queue carries {QUEUE_PURPOSE.get(state.name, 'platform tasks')}.",
            what_to_do=[
                f"Is it consumed? python manage.py ping_queues --queue {state.name}",
                "Are its tasks slow or stuck? Flower, or celery -A syncplatform inspect active",
                f"Otherwise it is load: add processes (WORKER_{state.name.upper()}_CONCURRENCY) "
                f"or workers for {state.name}.",
            ],
            runbook="Queue lag growing",
        ),
        runbook="queue-lag-growing",
        figures={
            "queue": state.name,
            "depth": state.depth,
            "oldest_age_seconds": round(state.oldest_age, 1),
            "slo_seconds": slo,
        },
    )


def _broker_alert(error: str, *, now: datetime, what: str = "") -> Alert:
    what = what or "The alert check could not read the queues from Redis"
    return Alert(
        condition="broker_unreachable",
        about="redis",
        subject="Broker (Redis) did not answer",
        body=_body(
            f"{what} (at {_time(now)}): {error}",
            "Webhooks and uploads are still recorded (outbox) and are published when Redis "
            "answers again; nothing is processed until then.",
            what_to_do=[
                'GET /readyz on a web instance: "broker": "unreachable" confirms it.',
                "docker compose logs redis; check the disk (AOF) and memory; "
                "docker compose up -d redis.",
                "Once it answers, watch syncplatform_outbox_backlog fall.",
            ],
            runbook="Broker (Redis) down",
        ),
        runbook="broker-redis-down",
        figures={"error": error[:500]},
    )


def outbox_backlog_alerts(*, now: datetime) -> list[Alert]:
    """Alert when the oldest unpublished outbox row is older than ALERT_OUTBOX_AGE_SECONDS."""
    threshold = settings.ALERT_OUTBOX_AGE_SECONDS
    pending = OutboxMessage.objects.filter(published_at__isnull=True)
    oldest = pending.order_by("created_at", "pk").first()
    if oldest is None or (age := (now - oldest.created_at).total_seconds()) <= threshold:
        return []
    backlog = pending.count()
    error = oldest.last_error.strip().splitlines()[-1][:300] if oldest.last_error.strip() else ""
    return [
        Alert(
            condition="outbox_backlog",
            about="outbox",
            subject=f"Outbox not publishing: oldest row waiting {_duration(age)} "
            f"({backlog} unpublished)",
            body=_body(
                f"{backlog} outbox row(s) are not yet published to the broker. The oldest "
                f"(id {oldest.pk}, {oldest.task_name} for queue {oldest.queue}) was recorded "
                f"{_exact(age)} ago (threshold {_duration(threshold)}) and has had "
                f"{oldest.publish_attempts} publish attempt(s).",
                f"Its last error: {error}" if error else "It has no publish error recorded.",
                "Until it is published, that work does not run.",
                what_to_do=[
                    "Is a relay running? docker compose ps relay; docker compose logs relay",
                    "Admin → Outbox messages, unpublished: last_error and publish_attempts.",
                    "python manage.py run_outbox_relay --once publishes a batch and shows "
                    "the error if it fails.",
                ],
                runbook="Outbox backlog growing",
            ),
            runbook="outbox-backlog-growing",
            figures={
                "backlog": backlog,
                "oldest_age_seconds": round(age, 1),
                "threshold_seconds": threshold,
                "oldest_id": oldest.pk,
                "oldest_task": oldest.task_name,
                "publish_attempts": oldest.publish_attempts,
                "last_error": error,
            },
        )
    ]


def dead_letter_alerts(*, now: datetime) -> list[Alert]:
    """One alert naming the open dead letters that are new since the last such alert.

    New means created after the last one an earlier alert reported (or, with none yet, in
    the last window): letters that arrive after a window's alert are announced in the next.
    """
    letters = DeadLetter.objects.filter(status=DeadLetter.Status.OPEN)
    last_reported = _last_reported_dead_letter()
    if last_reported is None:
        since = now - timedelta(seconds=settings.ALERT_WINDOW_SECONDS)
        letters = letters.filter(created_at__gt=since)
    else:
        letters = letters.filter(pk__gt=last_reported)
    groups = list(
        letters.values("task_name", "reason")
        .annotate(count=Count("pk"), last_id=Max("pk"), first_at=Min("created_at"))
        .order_by("-count", "task_name", "reason")
    )
    if not groups:
        return []
    total = sum(group["count"] for group in groups)
    last_id = max(group["last_id"] for group in groups)
    by_task: dict[str, int] = {}
    for group in groups:
        by_task[group["task_name"]] = by_task.get(group["task_name"], 0) + group["count"]
    names = ", ".join(f"{task} ({count})" for task, count in by_task.items())
    lines = [
        f"- {g['task_name']}: {g['count']}, reason {g['reason']}; latest error: "
        f"{_error_of(DeadLetter.objects.get(pk=g['last_id']))}"
        for g in groups
    ]
    return [
        Alert(
            condition="dead_letters",
            about="all",
            subject=f"{total} new dead letter(s): {names}",
            body=_body(
                f"{total} task(s) will not be retried any more and wait for a decision "
                "(requeue or discard). By task and reason, with the latest error:",
                "\n".join(lines),
                f"Admin: {reverse('admin:deadletters_deadletter_changelist')}?status__exact=open",
                what_to_do=[
                    "Read the error and traceback of a few; filter by reason and task.",
                    "exhausted or deadline in a burst: a dependency was down. Once it is "
                    "healthy, select them and Requeue.",
                    "permanent: fix the data or deploy the fix first, then requeue; discard "
                    "what is superseded.",
                ],
                runbook="Dead letters appearing",
            ),
            runbook="dead-letters-appearing",
            figures={
                "count": total,
                "last_id": last_id,
                "by_task": [
                    {"task": g["task_name"], "reason": g["reason"], "count": g["count"]}
                    for g in groups
                ],
            },
        )
    ]


def _last_reported_dead_letter() -> int | None:
    data = (
        Notification.objects.filter(dedup_key__startswith=DEAD_LETTER_KEY_PREFIX)
        .order_by("-created_at", "-pk")
        .values_list("data", flat=True)
        .first()
    )
    try:
        return int(data["figures"]["last_id"])
    except (TypeError, KeyError, ValueError):
        return None


def _error_of(letter: DeadLetter) -> str:
    lines = letter.error.strip().splitlines()
    return lines[-1][:200] if lines else "(no error text)"


def import_stalled_alerts(*, now: datetime) -> list[Alert]:
    """One alert per open import run whose counters have not moved for the threshold.

    A queued run has not started at all: its creation counts as its last progress.
    """
    threshold = settings.ALERT_IMPORT_STALL_SECONDS
    runs = (
        ImportRun.objects.filter(status__in=ImportRun.OPEN_STATUSES)
        .annotate(last_moved=Coalesce("progress_at", "created_at"))
        .filter(last_moved__lt=now - timedelta(seconds=threshold))
        .order_by("last_moved", "pk")
    )
    return [_import_alert(run, now=now, threshold=threshold) for run in runs]


def _import_alert(run: ImportRun, *, now: datetime, threshold: int) -> Alert:
    idle = (now - run.last_moved).total_seconds()
    name = run.original_filename or run.file.name
    card = reverse("admin:imports_importrun_change", args=[run.pk])
    return Alert(
        condition="import_stalled",
        about=str(run.pk),
        subject=f"Import #{run.pk} ({name}) has made no progress for {_duration(idle)}",
        body=_body(
            f"Import #{run.pk} of {name} is {run.status}: {run.processed_rows} of "
            f"{run.total_rows} rows processed, {run.batches_done} of {run.batch_count} "
            f"batches done. Its counters last moved at {_time(run.last_moved)}, "
            f"{_duration(idle)} ago (threshold {_duration(threshold)}).",
            f"Run card: {card}",
            what_to_do=[
                "Admin → Dead letters: a dead letter of imports.process_batch (or "
                "imports.start_run) holds it up; fix the cause and requeue it, the run then "
                "finishes by itself.",
                "Is low consumed? python manage.py ping_queues --queue low",
                "Nothing to fix and the run is no longer wanted: Cancel on its card.",
            ],
            runbook="Import run with no progress",
        ),
        runbook="import-run-with-no-progress",
        figures={
            "import_id": run.pk,
            "file": name,
            "status": run.status,
            "processed_rows": run.processed_rows,
            "total_rows": run.total_rows,
            "batches_done": run.batches_done,
            "batch_count": run.batch_count,
            "last_progress_at": run.last_moved.isoformat(),
            "idle_seconds": round(idle, 1),
            "threshold_seconds": threshold,
        },
    )


# --- Wording -----------------------------------------------------------------------------


def _body(*paragraphs: str, what_to_do: list[str], runbook: str) -> str:
    window = _duration(settings.ALERT_WINDOW_SECONDS)
    steps = "\n".join(f"{n}. {step}" for n, step in enumerate(what_to_do, 1))
    return "\n\n".join(
        [
            *paragraphs,
            f"What to look at:\n{steps}",
            f'Runbook: {GUIDE}, "3 a.m. runbook", "{runbook}".',
            f"This alert is sent at most once per {window} for the same condition.",
        ]
    )


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 120:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"


def _exact(seconds: float) -> str:
    """A duration for the reader, with the exact seconds when it is rounded to minutes."""
    return _duration(seconds) if seconds < 120 else f"{_duration(seconds)} ({seconds:.0f} s)"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
