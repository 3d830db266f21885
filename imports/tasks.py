"""Celery entry points of imports: thin, by id, over services (the retry policy decides).

Routing (settings.CELERY_TASK_ROUTES): start and finish on `default`, batches and retries of
failed rows on `low`, so bulk work never delays webhooks on `high`.
"""

from __future__ import annotations

from celery import shared_task

from syncplatform.retry import PlatformTask

from . import services


@shared_task(name=services.START_TASK, base=PlatformTask)
def start_run(run_id: int) -> None:
    services.run_start(run_id=run_id)


@shared_task(name=services.BATCH_TASK, base=PlatformTask)
def process_batch(batch_id: int) -> None:
    services.batch_process(batch_id=batch_id)


@shared_task(name=services.FINISH_TASK, base=PlatformTask)
def finish_run(run_id: int) -> None:
    services.run_finish(run_id=run_id)


@shared_task(name=services.RETRY_TASK, base=PlatformTask)
def retry_failed_rows(run_id: int, retry_pass: int) -> None:
    services.failed_rows_retry(run_id=run_id, retry_pass=retry_pass)
