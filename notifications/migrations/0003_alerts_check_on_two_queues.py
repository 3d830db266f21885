"""Run the operator alerts check from two workers, so a dead one is reported by the other.

The check used to run on `default` only: with that worker down, nothing reported the lag of
`default` itself. *Operator alerts* now leaves its queue to CELERY_TASK_ROUTES (`high`), and
*Operator alerts (default queue)* runs the same check on `default`, so that `high` is watched
while its worker is down. Both announce a condition once per window between them.
"""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

TASK = "notifications.check_alerts"
PRIMARY = "Operator alerts"
SECOND = "Operator alerts (default queue)"


def _touch(apps) -> None:
    # A running beat reloads its schedule when this changes (model signals do not fire here).
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    # Only if it still has the queue 0002 gave it: an operator's own choice stays.
    PeriodicTask.objects.filter(name=PRIMARY, task=TASK, queue="default").update(queue=None)
    # By name only: an operator's later changes (interval, enabled) survive a re-run.
    if not PeriodicTask.objects.filter(name=SECOND).exists():
        primary = PeriodicTask.objects.filter(name=PRIMARY, task=TASK).first()
        if primary is not None and primary.interval is not None:
            interval, every = primary.interval, primary.interval.every
        else:
            every = settings.ALERT_CHECK_SECONDS
            interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.create(
            name=SECOND,
            task=TASK,
            interval=interval,
            queue="default",
            kwargs="{}",
            enabled=primary.enabled if primary is not None else True,
            # A check still waiting when the next one is due is worth nothing: drop it.
            expire_seconds=every,
            description="The operator alerts check again, from the default worker: it reports "
            "the high queue's lag while the high worker (which runs 'Operator alerts') is down.",
        )
    _touch(apps)


def unschedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=SECOND, task=TASK).delete()
    PeriodicTask.objects.filter(name=PRIMARY, task=TASK, queue__isnull=True).update(queue="default")
    _touch(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_operator_alerts_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
