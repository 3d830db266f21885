"""Platform-level tasks: the queue probe used by `manage.py ping_queues` and the smoke test."""

from typing import Any

from celery import shared_task

from syncplatform.retry import PlatformTask


@shared_task(name="platform.ping_queue", base=PlatformTask, bind=True, ignore_result=False)
def ping_queue(self: PlatformTask, token: str) -> dict[str, Any]:
    """Answer which worker took this message from which queue."""
    return {
        "token": token,
        "queue": (self.request.delivery_info or {}).get("routing_key"),
        "hostname": self.request.hostname,
    }
