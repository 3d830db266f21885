"""manage.py reconcile SLUG: reconcile a connector with its ERP now, in the foreground."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from erp_connectors.models import Connector, ReconciliationRun
from erp_connectors.reconciliation import (
    ReconciliationAlreadyRunning,
    ReconciliationNotPossible,
    reconcile_connector,
)


class Command(BaseCommand):
    help = (
        "Pull connector SLUG's stock and prices from its ERP and apply what is newer there, "
        "here and now (no worker needed). Prints the run id and its counts; exits non-zero "
        "for an unknown or disabled connector, one without an ERP URL, one already being "
        "reconciled, or a failed run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The connector's slug.")

    def handle(self, *args: Any, **options: Any) -> None:
        connector = Connector.objects.filter(slug=options["slug"]).first()
        if connector is None:
            raise CommandError(f"no connector with slug {options['slug']!r}")
        try:
            run = reconcile_connector(
                connector_id=connector.pk, trigger=ReconciliationRun.Trigger.COMMAND
            )
        except (ReconciliationNotPossible, ReconciliationAlreadyRunning) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"reconciliation run {run.pk} of {connector.slug}: {run.status}")
        self.stdout.write(
            f"found {run.found}, fixed {run.fixed}, in sync {run.in_sync}, failed {run.failed}"
        )
        for error in run.errors:
            self.stdout.write(
                f"  {error['kind']} {error['sku'] or '-'}: {error['code']}: {error['message']}"
            )
        if run.status != ReconciliationRun.Status.COMPLETED:
            raise CommandError(f"reconciliation run {run.pk} failed: {run.error}")
