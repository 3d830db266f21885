"""The outbox relay: publishes outbox rows, and keeps at it through broker outages.

On PostgreSQL it publishes every row, woken by the NOTIFY of each commit that adds some;
on SQLite, the rows the after-commit fast path missed. A pass claims due rows and marks them
published in one statement (`… FOR UPDATE SKIP LOCKED` on PostgreSQL, so several relays
share the backlog without publishing the same row at the same time; on SQLite the
transaction holds the single write lock, so one relay works at a time), publishes them,
then commits.

A relay killed after publishing but before its commit leaves its rows unpublished (the
claim transaction rolls back) and they are published again: at-least-once, and consumers
are idempotent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from syncplatform.celery import app as celery_app
from syncplatform.queue_state import BrokerUnavailable as QueuesUnreadable
from syncplatform.queue_state import queue_states
from syncplatform.sql import model_from_row, select_columns

from .models import OutboxMessage
from .publisher import BROKER_ERRORS, BatchForm, batch_form_for, publish, publish_batch

logger = logging.getLogger(__name__)

# The channel the outbox table's trigger notifies on commit (migration 0002).
NOTIFY_CHANNEL = "outbox_message"


# Sent by the relay on each failed pass (or failed probe of an idle broker) while the broker
# is down, with `error` and `down_seconds`: the operator alerts announce the outage from
# here, as nothing that travels through the broker can.
broker_unavailable = Signal()
# Sent by the relay after each probe of the broker that answered, with the queues' `states`
# (syncplatform.queue_state.QueueState): the operator alerts watch them from here for the
# time when no worker runs their check (every worker down or stuck).
queues_probed = Signal()


class BrokerUnavailable(Exception):
    """Publishing failed because the broker could not be reached."""


def relay_once(*, batch_size: int | None = None, stall_after_publish: float = 0.0) -> int:
    """Claim, publish and mark one batch of due rows. Returns how many were published.

    `stall_after_publish` holds the claim between publish and mark: a fault-injection knob
    for the crash tests, zero in production.
    """
    batch_size = batch_size or settings.OUTBOX_RELAY_BATCH_SIZE
    due_before = timezone.now() - timedelta(seconds=settings.OUTBOX_RELAY_GRACE_SECONDS)
    with transaction.atomic():
        rows = _claim_and_mark(batch_size, due_before)
        published: list[int] = []
        failure: BaseException | None = None
        if rows:
            with celery_app.pool.acquire(block=True) as broker:
                for form, unit in _publish_units(rows):
                    try:
                        if form is None:
                            publish(unit[0], connection=broker)
                        else:
                            publish_batch(form, unit, connection=broker)
                    except BROKER_ERRORS as exc:
                        failure = exc
                        break
                    published.extend(row.pk for row in unit)
        if stall_after_publish and published:
            logger.warning("stalling %.1fs between publish and mark", stall_after_publish)
            time.sleep(stall_after_publish)
        if failure is not None:
            # Unmark the rows that wait, with a trace for the admin and the backlog alert.
            done = set(published)
            waiting = [row.pk for row in rows if row.pk not in done]
            OutboxMessage.objects.filter(pk__in=waiting).update(
                published_at=None,
                publish_attempts=F("publish_attempts") + 1,
                last_error=str(failure)[:500],
            )
    if failure is not None:
        raise BrokerUnavailable(str(failure)) from failure
    return len(published)


def _claim_and_mark(batch_size: int, due_before: datetime) -> list[OutboxMessage]:
    """Claim up to `batch_size` due rows, oldest first, marked published in the same step.

    One statement instead of a locking SELECT and a later UPDATE: the relay runs this for
    every commit it is woken by. The mark only holds if the caller's transaction commits,
    after the publish; if the relay dies before, the rows are unpublished again. On
    PostgreSQL, SKIP LOCKED lets several relays share the backlog.
    """
    meta = OutboxMessage._meta
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    skip_locked = (
        " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    )
    sql = (
        f"UPDATE {table} SET {quote('published_at')} = %s WHERE {pk} IN ("  # noqa: S608
        f"SELECT {pk} FROM {table} WHERE {quote('published_at')} IS NULL"
        f" AND {quote('created_at')} <= %s ORDER BY {pk} LIMIT %s{skip_locked})"
        f" RETURNING {select_columns(OutboxMessage)}"
    )
    stamp = meta.get_field("published_at")
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                stamp.get_db_prep_save(timezone.now(), connection),
                stamp.get_db_prep_save(due_before, connection),
                batch_size,
            ],
        )
        rows = cursor.fetchall()
    return sorted((model_from_row(OutboxMessage, row) for row in rows), key=lambda m: m.pk)


def _publish_units(
    rows: list[OutboxMessage],
) -> list[tuple[BatchForm | None, list[OutboxMessage]]]:
    """Split claimed rows into what is sent as one message each, in the rows' order.

    Rows with a batch form (outbox_batch_form_register) travel together, up to
    OUTBOX_RELAY_BATCH_MESSAGE_SIZE per message and per queue; the others alone. Under a
    light load a claim holds one row and nothing changes; under a storm each message
    carries many rows, and the broker's per-message cost is paid once for them.
    """
    limit = settings.OUTBOX_RELAY_BATCH_MESSAGE_SIZE
    units: list[tuple[BatchForm | None, list[OutboxMessage]]] = []
    open_units: dict[tuple[str, str], list[OutboxMessage]] = {}
    for row in rows:
        form = batch_form_for(row) if limit > 1 else None
        if form is None:
            units.append((None, [row]))
            continue
        key = (form.batch_task, row.queue)
        unit = open_units.get(key)
        if unit is None or len(unit) >= limit:
            unit = open_units[key] = []
            units.append((form, unit))
        unit.append(row)
    return units


def prune_published(*, older_than: timedelta | None = None, chunk: int = 5000) -> int:
    """Delete published rows past their retention, in chunks so no lock is held long."""
    older_than = older_than or timedelta(seconds=settings.OUTBOX_RETENTION_SECONDS)
    cutoff = timezone.now() - older_than
    deleted = 0
    while True:
        ids = list(
            OutboxMessage.objects.filter(published_at__lt=cutoff).values_list("pk", flat=True)[
                :chunk
            ]
        )
        if not ids:
            return deleted
        deleted += OutboxMessage.objects.filter(pk__in=ids).delete()[0]


@dataclass
class Relay:
    """The relay loop: poll, publish, back off while the broker is down, prune now and then."""

    poll_seconds: float = field(default_factory=lambda: settings.OUTBOX_RELAY_POLL_SECONDS)
    max_backoff: float = field(default_factory=lambda: settings.OUTBOX_RELAY_MAX_BACKOFF_SECONDS)
    gather_seconds: float = field(default_factory=lambda: settings.OUTBOX_RELAY_GATHER_SECONDS)
    stall_after_publish: float = 0.0
    prune_every_seconds: float = 300.0
    probe_every_seconds: float = field(
        default_factory=lambda: settings.OUTBOX_RELAY_BROKER_PROBE_SECONDS
    )
    stopping: bool = False
    _listening_on: object = field(default=None, repr=False)
    _announced: bool = field(default=False, repr=False)

    def run(self) -> None:
        backoff = 0.0
        next_prune = next_probe = 0.0
        down_since = 0.0  # monotonic time an outage was first seen, 0 while the broker answers
        while not self.stopping:
            try:
                # Subscribed before the pass, so a commit during the pass ends the next wait.
                self._listen()
                pass_started = time.monotonic()
                published = relay_once(stall_after_publish=self.stall_after_publish)
            except BrokerUnavailable as exc:
                backoff = min(self.max_backoff, max(1.0, backoff * 2))
                logger.warning("broker unavailable (%s); retrying in %.0fs", exc, backoff)
                down_since = down_since or time.monotonic()
                self._report_outage(exc, time.monotonic() - down_since)
                self._sleep(backoff)
                continue
            except Exception:
                # The database may be down too; keep the loop alive and try again.
                logger.exception("outbox relay pass failed")
                backoff = min(self.max_backoff, max(1.0, backoff * 2))
                self._sleep(backoff)
                continue
            if backoff:
                logger.info("broker reachable again; relaying")
                backoff = 0.0
            if published:
                logger.info("published %d outbox message(s)", published)
                down_since = 0.0
            if time.monotonic() >= next_probe:
                # Idle, nothing to publish would tell of an outage; busy or not, the queues'
                # states are read for the alerts' watch (queues_probed).
                next_probe = time.monotonic() + self.probe_every_seconds
                down_since = self._probe_broker(down_since)
            if time.monotonic() >= next_prune:
                pruned = prune_published()
                if pruned:
                    logger.info("pruned %d published outbox message(s)", pruned)
                next_prune = time.monotonic() + self.prune_every_seconds
            if published < settings.OUTBOX_RELAY_BATCH_SIZE:
                self._wait_for_work(self.poll_seconds)
                if published:
                    # Busy: let the commits of the next few milliseconds join this one's
                    # pass. Each pass costs ~3 ms of CPU and sends at least one message;
                    # one per commit is what saturated a 2-core host at 100 webhooks/s.
                    self._sleep(pass_started + self.gather_seconds - time.monotonic())
        logger.info("outbox relay stopped")

    def _probe_broker(self, down_since: float) -> float:
        """Read the queues' states from the broker; return the outage's start, or 0."""
        try:
            states = queue_states()
        except QueuesUnreadable as exc:
            down_since = down_since or time.monotonic()
            logger.warning("broker unavailable (%s) on a probe", exc)
            self._report_outage(exc, time.monotonic() - down_since)
            return down_since
        self._send(queues_probed, states=states)
        return 0.0

    def _report_outage(self, exc: Exception, down_seconds: float) -> None:
        self._send(broker_unavailable, error=str(exc), down_seconds=down_seconds)

    def _send(self, signal: Signal, **kwargs: object) -> None:
        """Tell the receivers (the operator alerts); a failing receiver never stops the relay."""
        for receiver, answer in signal.send_robust(sender=type(self), **kwargs):
            if isinstance(answer, Exception):
                logger.warning("receiver %r failed: %r", receiver, answer)

    def _listen(self) -> None:
        """On PostgreSQL, LISTEN for the outbox trigger's notifications on this connection.

        Done again whenever Django has replaced the connection (after a database error).
        """
        if connection.vendor != "postgresql":
            if not self._announced:
                logger.info("outbox relay started, polling every %.1fs", self.poll_seconds)
                self._announced = True
            return
        connection.ensure_connection()
        if connection.connection is self._listening_on:
            return
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self._listening_on = connection.connection
        if not self._announced:
            logger.info("outbox relay started, woken by each commit (LISTEN %s)", NOTIFY_CHANNEL)
            self._announced = True

    def _wait_for_work(self, seconds: float) -> None:
        """Wait until new rows are committed (PostgreSQL's NOTIFY), or `seconds` at most.

        Elsewhere there is no such signal and the relay polls; the on_commit fast path
        covers the common case there.
        """
        pg = self._listening_on
        if pg is None or pg is not connection.connection:
            self._sleep(seconds)
            return
        # A notification that arrived during the last pass is in psycopg's backlog and
        # ends the wait at once.
        deadline = time.monotonic() + seconds
        try:
            while not self.stopping and (remaining := deadline - time.monotonic()) > 0:
                if any(True for _ in pg.notifies(timeout=min(remaining, 0.5), stop_after=1)):
                    _discard_pending_notifications(pg)
                    return
        except psycopg.Error as exc:
            # The server went away while we waited: reconnect (and LISTEN) on the next pass.
            logger.warning("lost the database connection while waiting: %s", exc)
            self._listening_on = None
            connection.close()
            self._sleep(min(seconds, 1.0))

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(0.1, remaining))


def _discard_pending_notifications(pg: psycopg.Connection) -> None:
    """Drop the notifications already received: the coming pass covers their commits.

    Every commit that adds rows notifies once. Taken one per pass, the notifications of a
    burst queue up faster than the passes consume them (a busy pass gathers for 0.1 s):
    after a storm of 10,000 webhooks the idle relay ran one empty claim per notification,
    back to back, and kept 0.85 of a core of PostgreSQL busy while the backlog lasted. Each
    call yields what psycopg already holds, or else what one read of the socket brings;
    two calls cover both.
    """
    for _ in range(2):
        for _notification in pg.notifies(timeout=0):
            pass
