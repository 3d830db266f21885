"""Reconciliation (CONTRACT §5): pull the ERP's own view and apply what is newer there.

A run pages the ERP's stock, then its prices (erp_client), checks every item with the webhook
validators and applies each page through the catalog services, whose newer-wins rule decides
what is drift: an applied item was newer in the ERP (`fixed`), a stale one was in sync, a
refused one (invalid, unknown sku) is `failed`. Each page commits with the run's counters,
so they never go backwards, and a run that stops half-way keeps what it applied.

One run per connector at a time: a second start while one is running is refused with
ReconciliationAlreadyRunning (a unique constraint makes this hold across processes). A run
that has shown no progress for RECONCILE_STALE_SECONDS is taken as abandoned (its process
died), marked failed, and no longer blocks a new one.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from catalog.services import Outcome
from notifications.alerts import Alert, alert_announce
from notifications.models import Notification
from notifications.services import notification_create
from syncplatform.outbox.services import outbox_enqueue
from syncplatform.text import storable

from .apply import normalised_items_apply
from .erp_client import ErpClient, ErpError, ErpPage
from .models import Connector, InboundEvent, ReconciliationRun
from .schemas import MAX_REPORTED_ERRORS, FieldError, price_item_check, stock_item_check

logger = logging.getLogger(__name__)

RECONCILE_TASK = "erp_connectors.reconcile_connector"
RECONCILE_ALL_TASK = "erp_connectors.reconcile_all"

# What a run reads, in order: (kind in the errors list, ERP resource, event type to apply as).
_RESOURCES = (
    ("stock", "stock", InboundEvent.Type.STOCK_UPDATED),
    ("price", "prices", InboundEvent.Type.PRICE_UPDATED),
)
_VALIDATORS = {"stock": stock_item_check, "price": price_item_check}
INVALID = "invalid"


class ReconciliationNotPossible(Exception):
    """The connector cannot be reconciled (unknown, disabled, no ERP URL); str() says why."""


class ReconciliationAlreadyRunning(Exception):
    """A run of the same connector is under way; `run` is that run."""

    def __init__(self, run: ReconciliationRun) -> None:
        started = run.started_at.isoformat(timespec="seconds")
        super().__init__(
            f"reconciliation run {run.pk} of connector {run.connector.slug} "
            f"is already running (started {started})"
        )
        self.run = run


class _RunTakenOver(Exception):
    """Another process marked this run abandoned while it was still working."""


# -- queueing (admin, beat) ----------------------------------------------------------------
def reconciliation_queue(*, connector: Connector, trigger: str) -> None:
    """Queue a run of `connector` for a `low` worker, through the outbox.

    Raises ReconciliationNotPossible at once for a connector that cannot be reconciled.
    """
    _check(connector)
    with transaction.atomic():
        outbox_enqueue(
            task_name=RECONCILE_TASK,
            kwargs={"connector_id": connector.pk, "trigger": trigger},
            dedup_key=f"reconcile:{connector.pk}:{trigger}:{timezone.now().isoformat()}",
        )


def reconciliation_queue_all(*, trigger: str = ReconciliationRun.Trigger.SCHEDULE) -> int:
    """Queue a run of every enabled connector that has an ERP URL; return how many."""
    with transaction.atomic():
        connectors = list(Connector.objects.filter(enabled=True).exclude(erp_url=""))
        for connector in connectors:
            reconciliation_queue(connector=connector, trigger=trigger)
    return len(connectors)


# -- a run -----------------------------------------------------------------------------------
def reconcile_connector(*, connector_id: int, trigger: str) -> ReconciliationRun:
    """Reconcile one connector's stock and prices with its ERP; return the finished run.

    The run ends `completed`, or `failed` with the reason in `error` when the ERP could not
    be read (after the client's retries); items applied before that stay applied. Raises
    ReconciliationNotPossible or ReconciliationAlreadyRunning without recording a run.
    Database faults and interruptions mark the run failed and propagate, for the task's retry
    policy; a retry is a new run. Safe to repeat: applying the same ERP values again is stale.
    """
    connector = Connector.objects.filter(pk=connector_id).first()
    if connector is None:
        raise ReconciliationNotPossible(f"connector {connector_id} does not exist")
    _check(connector)
    run = _run_start(connector, trigger)
    logger.info("reconciliation run %s of %s started (%s)", run.pk, connector.slug, trigger)
    try:
        with ErpClient(base_url=connector.erp_url, token=connector.erp_token) as client:
            for kind, resource, event_type in _RESOURCES:
                for number, page in enumerate(client.pages(resource), start=1):
                    _page_apply(run.pk, kind, event_type, number, page)
    except ErpError as exc:
        return _run_finish(run.pk, error=str(exc))
    except _RunTakenOver:
        logger.warning("reconciliation run %s was marked abandoned; stopping", run.pk)
        return ReconciliationRun.objects.get(pk=run.pk)
    except BaseException as exc:
        _run_interrupted(run.pk, exc)
        raise
    return _run_finish(run.pk)


def _check(connector: Connector) -> None:
    if not connector.enabled:
        raise ReconciliationNotPossible(f"connector {connector.slug} is disabled")
    if not connector.erp_url:
        raise ReconciliationNotPossible(
            f"connector {connector.slug} has no ERP URL (set erp_url to reconcile it)"
        )


def _run_start(connector: Connector, trigger: str) -> ReconciliationRun:
    stale_after = timedelta(seconds=settings.RECONCILE_STALE_SECONDS)
    for _ in range(3):
        try:
            with transaction.atomic():
                return ReconciliationRun.objects.create(connector=connector, trigger=trigger)
        except IntegrityError:
            running = (
                ReconciliationRun.objects.select_related("connector")
                .filter(connector=connector, status=ReconciliationRun.Status.RUNNING)
                .first()
            )
            if running is None:  # it finished in between: try again
                continue
            if running.heartbeat_at > timezone.now() - stale_after:
                raise ReconciliationAlreadyRunning(running) from None
            # Only if it still shows the same heartbeat: a live run moves it with each page.
            ReconciliationRun.objects.filter(
                pk=running.pk,
                status=ReconciliationRun.Status.RUNNING,
                heartbeat_at=running.heartbeat_at,
            ).update(
                status=ReconciliationRun.Status.FAILED,
                finished_at=timezone.now(),
                error=f"abandoned: no progress for over {settings.RECONCILE_STALE_SECONDS} s "
                "(its process stopped)",
            )
            logger.warning("reconciliation run %s abandoned; starting a new one", running.pk)
    raise ReconciliationNotPossible(f"could not start a run of connector {connector.slug}")


def _page_apply(run_id: int, kind: str, event_type: str, number: int, page: ErpPage) -> None:
    """Check and apply one page; move the run's counters in the same transaction."""
    validate = _VALIDATORS[kind]
    valid: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for index, raw in enumerate(page.items):
        problems: list[FieldError] = []
        item = validate(raw, f"page {number} items[{index}]", problems)
        if item is None:
            message = "; ".join(f"{p.path}: {p.message}" for p in problems)
            errors.append(
                {"kind": kind, "sku": _sku_of(raw), "code": INVALID, "message": storable(message)}
            )
        else:
            valid.append(item)
    with transaction.atomic():
        run = ReconciliationRun.objects.select_for_update().get(pk=run_id)
        if run.status != ReconciliationRun.Status.RUNNING:
            raise _RunTakenOver
        fixed = 0
        for result in normalised_items_apply(event_type, valid) if valid else []:
            if result.outcome == Outcome.APPLIED:
                fixed += 1
            elif result.outcome == Outcome.FAILED:
                sku = valid[result.index]["sku"]
                errors.append(
                    {
                        "kind": kind,
                        "sku": storable(sku),
                        "code": result.code,
                        "message": storable(result.message),
                    }
                )
        room = MAX_REPORTED_ERRORS - len(run.errors)
        ReconciliationRun.objects.filter(pk=run_id).update(
            pages=F("pages") + 1,
            found=F("found") + len(page.items),
            fixed=F("fixed") + fixed,
            failed=F("failed") + len(errors),
            errors=run.errors + errors[: max(room, 0)],
            heartbeat_at=timezone.now(),
        )


def _run_finish(run_id: int, *, error: str = "") -> ReconciliationRun:
    """Complete (or fail, with `error`) the run; announce drift in the same transaction."""
    with transaction.atomic():
        run = (
            ReconciliationRun.objects.select_for_update().select_related("connector").get(pk=run_id)
        )
        if run.status != ReconciliationRun.Status.RUNNING:
            return run
        run.status = (
            ReconciliationRun.Status.FAILED if error else ReconciliationRun.Status.COMPLETED
        )
        run.error = storable(error)
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        if run.fixed:
            _notify_drift(run)
    log = logger.warning if error else logger.info
    log(
        "reconciliation run %s of %s %s: found %d, fixed %d, failed %d%s",
        run.pk,
        run.connector.slug,
        run.status,
        run.found,
        run.fixed,
        run.failed,
        f" ({error})" if error else "",
    )
    return run


def _run_interrupted(run_id: int, exc: BaseException) -> None:
    """Fail a run that stopped on an unexpected fault, so it does not block the next one.

    Its own statement, after the failed work; if the database is what failed this may fail
    too, and the stale-run rule frees the connector later.
    """
    try:
        ReconciliationRun.objects.filter(pk=run_id, status=ReconciliationRun.Status.RUNNING).update(
            status=ReconciliationRun.Status.FAILED,
            finished_at=timezone.now(),
            error=f"interrupted: {type(exc).__name__}: {exc}"[:2000],
        )
    except DatabaseError:
        logger.warning("could not mark reconciliation run %s failed", run_id, exc_info=True)


def _notify_drift(run: ReconciliationRun) -> None:
    """Tell the connector's notify_email, or else the operators' alert channels, of the drift.

    Drift must not go unreported (CONTRACT §5), and a connector need not have an address.
    """
    connector = run.connector
    lines = [
        f"Reconciliation run {run.pk} of connector {connector.slug} ({run.trigger}) found "
        f"{run.fixed} item(s) where the ERP was newer than the shop, and applied them.",
        "",
        f"status:   {run.status}",
        f"found:    {run.found} item(s) listed by the ERP",
        f"fixed:    {run.fixed}",
        f"in sync:  {run.in_sync}",
        f"failed:   {run.failed}",
    ]
    if run.error:
        lines.append(f"error:    {run.error}")
    subject = f"Reconciliation of {connector.slug}: {run.fixed} item(s) fixed"
    facts = {
        "run_id": run.pk,
        "connector": connector.slug,
        "status": run.status,
        "found": run.found,
        "fixed": run.fixed,
        "failed": run.failed,
    }
    if connector.notify_email:
        notification_create(
            channel=Notification.Channel.EMAIL,
            recipient=connector.notify_email,
            subject=subject,
            body="\n".join(lines),
            dedup_key=f"reconciliation:{run.pk}",
            data=facts,
        )
        return
    lines += ["", f"Connector {connector.slug} has no notify_email: sent to the operator alerts."]
    alert_announce(
        Alert(
            condition="reconciliation_drift",
            about=str(run.pk),
            subject=subject,
            body="\n".join(lines),
            runbook="reconciliation",
            figures=facts,
        )
    )


def _sku_of(raw: Any) -> str:
    sku = raw.get("sku") if isinstance(raw, dict) else None
    return storable(sku[:64]) if isinstance(sku, str) else ""
