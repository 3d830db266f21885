"""Schedule the nightly reconciliation in django-celery-beat (editable in the admin after)."""

from django.db import migrations
from django.utils import timezone

PERIODIC_TASK_NAME = "Nightly ERP reconciliation"
TASK = "erp_connectors.reconcile_all"


def schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    # By name only: an operator's later changes (time, enabled) survive a re-run.
    if PeriodicTask.objects.filter(name=PERIODIC_TASK_NAME).exists():
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="0",
        hour="3",
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone="UTC",
    )
    PeriodicTask.objects.get_or_create(
        name=PERIODIC_TASK_NAME,
        defaults={
            "task": TASK,
            "crontab": crontab,
            "queue": "low",
            "kwargs": "{}",
            "description": "Reconcile stock and prices with every enabled connector's ERP.",
        },
    )
    # A running beat reloads its schedule when this changes (model signals do not fire here).
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unschedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=PERIODIC_TASK_NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("erp_connectors", "0003_reconciliationrun"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
