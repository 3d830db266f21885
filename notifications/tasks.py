from celery import shared_task

from syncplatform.retry import PlatformTask

from .alerts import alerts_check
from .services import notification_deliver


@shared_task(name="notifications.deliver_notification", base=PlatformTask)
def deliver_notification(notification_id: int) -> None:
    """Send one recorded notification; retried on transient faults by the policy."""
    notification_deliver(notification_id=notification_id)


@shared_task(name="notifications.check_alerts", base=PlatformTask)
def check_alerts() -> None:
    """Notify the operators of what is wrong now; each condition at most once per window.

    Sent by beat every ALERT_CHECK_SECONDS to `high` (its route) and to `default`, so each
    of the two is watched from the other; a repeat within the window records nothing.
    """
    alerts_check()
