"""Schedule the operator alerts check in django-celery-beat (editable in the admin after)."""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

PERIODIC_TASK_NAME = "Operator alerts"
TASK = "notifications.check_alerts"


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    # By name only: an operator's later changes (interval, enabled) survive a re-run.
    if PeriodicTask.objects.filter(name=PERIODIC_TASK_NAME).exists():
        return
    every = settings.ALERT_CHECK_SECONDS
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=PERIODIC_TASK_NAME,
        defaults={
            "task": TASK,
            "interval": interval,
            "queue": "default",
            "kwargs": "{}",
            # A check still waiting when the next one is due is worth nothing: drop it.
            "expire_seconds": every,
            "description": "Email and post to the alert webhook what is wrong with the "
            "platform (queue lag, outbox backlog, dead letters, stalled imports).",
        },
    )
    # A running beat reloads its schedule when this changes (model signals do not fire here).
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unschedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=PERIODIC_TASK_NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
