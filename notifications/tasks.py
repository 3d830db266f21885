from celery import shared_task

from syncplatform.retry import PlatformTask

from .services import notification_deliver


@shared_task(name="notifications.deliver_notification", base=PlatformTask)
def deliver_notification(notification_id: int) -> None:
    """Send one recorded notification; retried on transient faults by the policy."""
    notification_deliver(notification_id=notification_id)
