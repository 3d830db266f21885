"""Run the outbox relay until SIGTERM or SIGINT."""

import signal
from typing import Any

from django.core.management.base import BaseCommand

from syncplatform.outbox.relay import Relay, relay_once


class Command(BaseCommand):
    help = "Publish outbox rows to the broker, continuously (or once with --once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="relay one batch and exit")
        parser.add_argument(
            "--stall-after-publish",
            type=float,
            default=0.0,
            help="fault injection for crash tests: pause between publish and mark",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            self.stdout.write(f"published {relay_once()}")
            return
        relay = Relay(stall_after_publish=options["stall_after_publish"])

        def stop(signum: int, frame: object) -> None:
            relay.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        relay.run()
