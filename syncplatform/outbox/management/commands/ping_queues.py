"""Send a probe through each queue via the outbox and report which worker answered."""

import json
import time
import uuid
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_celery_results.models import TaskResult

from syncplatform.outbox.services import outbox_enqueue


class Command(BaseCommand):
    help = "Check that every queue is consumed: one probe task per queue, through the outbox."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--timeout", type=float, default=30.0)
        parser.add_argument("--queue", action="append", help="only these queues")

    def handle(self, *args: Any, **options: Any) -> None:
        queues = options["queue"] or list(settings.QUEUE_NAMES)
        token = uuid.uuid4().hex
        with transaction.atomic():
            task_ids = {
                queue: outbox_enqueue(
                    task_name="platform.ping_queue",
                    kwargs={"token": token},
                    queue=queue,
                    dedup_key=f"ping:{token}:{queue}",
                ).task_id
                for queue in queues
            }
        deadline = time.monotonic() + options["timeout"]
        answers: dict[str, Any] = {}
        while time.monotonic() < deadline and len(answers) < len(queues):
            for result in TaskResult.objects.filter(task_id__in=task_ids.values()):
                queue = next(q for q, tid in task_ids.items() if tid == result.task_id)
                answers[queue] = json.loads(result.result) if result.result else None
            time.sleep(0.2)
        for queue in queues:
            answer = answers.get(queue)
            self.stdout.write(json.dumps({"queue": queue, "answer": answer}))
        missing = [q for q in queues if q not in answers]
        if missing:
            raise CommandError(f"no answer from queue(s): {', '.join(missing)}")
