"""The retry policy, decided once for every task.

Tasks raise; this module decides. Transient faults (database, broker, network, a remote's
429/5xx) are retried with exponential backoff and full jitter until the attempt cap or the
deadline; everything else is permanent and not retried. Work that will not be retried becomes
a DeadLetter row an operator can requeue or discard: never a silent log line.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

import kombu.exceptions
import redis.exceptions
import requests
from billiard.exceptions import TimeLimitExceeded
from celery import Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

logger = logging.getLogger(__name__)


class TransientError(Exception):
    """The same work may succeed later: retry it with backoff."""


class PermanentError(Exception):
    """Retrying cannot help (bad data, a remote's 4xx): dead-letter it at once."""


# Faults of the things around us, not of the work itself.
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    TransientError,
    OperationalError,
    InterfaceError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
    SoftTimeLimitExceeded,
)

# Custom message headers that travel with every retry (Celery copies request.headers).
FIRST_ATTEMPT_HEADER = "first_attempt_at"
HISTORY_HEADER = "retry_history"


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_EXCEPTIONS)


def backoff_countdown(attempt: int) -> float:
    """Return the wait before retry number `attempt` (1-based): full jitter, capped.

    uniform(0, min(cap, base * 2**(attempt-1))): spreads a herd of failed tasks over the
    whole window instead of making them return together.
    """
    base = settings.RETRY_BACKOFF_BASE
    cap = settings.RETRY_BACKOFF_CAP
    # Celery's helper works in whole seconds; scale so sub-second bases keep their jitter.
    scale = 1000
    millis = get_exponential_backoff_interval(
        factor=int(base * scale), retries=attempt - 1, maximum=int(cap * scale), full_jitter=True
    )
    return millis / scale


def backoff_bound(attempt: int) -> float:
    """Return the largest wait backoff_countdown(attempt) can choose."""
    return min(settings.RETRY_BACKOFF_CAP, settings.RETRY_BACKOFF_BASE * 2 ** (attempt - 1))


class PlatformTask(Task):
    """Base class of every task: retries, deadline and dead letters live here, once.

    A task body only loads by id, calls a service and raises. Celery calls __call__ in the
    worker with the request context set, so this wraps every execution.
    """

    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except Exception as exc:
            if self.request.called_directly:
                raise
            self._handle_failure(exc, args, kwargs)
            raise

    def on_failure(
        self, exc: Exception, task_id: str, args: tuple, kwargs: dict, einfo: Any
    ) -> None:
        """Dead-letter a task the hard time limit killed.

        The pool process was killed, so __call__ never saw it; Celery calls this in the
        worker's main process, and acks the message afterwards.
        """
        if not isinstance(exc, TimeLimitExceeded):
            return
        from syncplatform.deadletters.services import dead_letter_record

        dead_letter_record(
            task_name=self.name,
            task_id=task_id,
            queue="",
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            reason="timeout",
            error=_describe(exc),
            traceback_text=str(einfo or ""),
            attempts=1,
            history=[{"attempt": 1, "at": time.time(), "error": _describe(exc)}],
            headers={},
        )
        logger.error("task %s[%s] dead-lettered: hard time limit exceeded", self.name, task_id)

    # -- decisions ---------------------------------------------------------------------
    def _handle_failure(self, exc: Exception, args: tuple, kwargs: dict) -> None:
        headers = dict(self.request.headers or {})
        attempt = self.request.retries + 1
        now = time.time()
        first_attempt_at = float(headers.get(FIRST_ATTEMPT_HEADER) or now)
        history = [
            *headers.get(HISTORY_HEADER, []),
            {"attempt": attempt, "at": now, "error": _describe(exc)},
        ]
        if not is_transient(exc):
            self._dead_letter(exc, args, kwargs, attempt, "permanent", history)
            return
        if attempt >= settings.RETRY_MAX_ATTEMPTS:
            self._dead_letter(exc, args, kwargs, attempt, "exhausted", history)
            return
        countdown = backoff_countdown(attempt)
        if now + countdown - first_attempt_at > settings.RETRY_DEADLINE_SECONDS:
            self._dead_letter(exc, args, kwargs, attempt, "deadline", history)
            return
        history[-1]["countdown"] = countdown
        logger.warning(
            "task %s[%s] attempt %d failed (%s); retrying in %.1fs",
            self.name,
            self.request.id,
            attempt,
            _describe(exc),
            countdown,
        )
        headers.update({FIRST_ATTEMPT_HEADER: first_attempt_at, HISTORY_HEADER: history})
        raise self.retry(exc=exc, countdown=countdown, max_retries=None, headers=headers)

    def _dead_letter(
        self,
        exc: Exception,
        args: tuple,
        kwargs: dict,
        attempts: int,
        reason: str,
        history: list[dict],
    ) -> None:
        from syncplatform.deadletters.services import dead_letter_record

        try:
            dead_letter_record(
                task_name=self.name,
                task_id=self.request.id or "",
                queue=(self.request.delivery_info or {}).get("routing_key") or "",
                args=list(args),
                kwargs=kwargs,
                reason=reason,
                error=_describe(exc),
                traceback_text="".join(traceback.format_exception(exc)),
                attempts=attempts,
                history=history,
                headers=dict(self.request.headers or {}),
            )
        except DatabaseError as db_exc:
            # Nowhere to record it: keep the message alive rather than drop the work.
            logger.error("cannot dead-letter %s[%s]: %s", self.name, self.request.id, db_exc)
            raise self.retry(
                exc=exc, countdown=settings.RETRY_BACKOFF_CAP, max_retries=None
            ) from db_exc
        logger.error(
            "task %s[%s] dead-lettered (%s) after %d attempt(s): %s",
            self.name,
            self.request.id,
            reason,
            attempts,
            _describe(exc),
        )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
