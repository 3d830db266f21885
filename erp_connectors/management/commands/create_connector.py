"""manage.py create_connector SLUG …: create or update a connector, print its secrets as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from erp_connectors.services import connector_save


class Command(BaseCommand):
    help = (
        "Create connector SLUG, or update the fields given if it exists, and print one JSON "
        'object: {"slug", "webhook_secret", "api_token"}. On creation, a webhook secret and '
        "an API token that are not given are generated. On update, webhook_secret is the "
        "current secret; a new --secret (or --rotate-secret) keeps the old one accepted as "
        "the previous secret until the next rotation. API tokens are stored only as a hash, "
        "so on update api_token is null unless --token or --new-token sets a new one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Connector slug, used in the webhook URL.")
        parser.add_argument("--name", help="Display name (default on creation: the slug).")
        parser.add_argument(
            "--secret",
            metavar="whsec_…",
            help="Webhook secret in Standard Webhooks form (24 to 64 bytes, base64).",
        )
        parser.add_argument(
            "--rotate-secret",
            action="store_true",
            help="On update: generate a new webhook secret (the current one stays accepted).",
        )
        parser.add_argument("--token", help="API token to set (stored hashed).")
        parser.add_argument(
            "--new-token",
            action="store_true",
            help="On update: generate a new API token (the old one stops working).",
        )
        parser.add_argument("--erp-url", help="Base URL of the ERP's REST API.")
        parser.add_argument("--erp-token", help="Bearer token for calls to the ERP.")
        parser.add_argument("--email", help="Where this connector's notifications go.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = connector_save(
                slug=options["slug"],
                name=options["name"],
                webhook_secret=options["secret"],
                rotate_webhook_secret=options["rotate_secret"],
                api_token=options["token"],
                new_api_token=options["new_token"],
                erp_url=options["erp_url"],
                erp_token=options["erp_token"],
                notify_email=options["email"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError("; ".join(_messages(exc))) from exc
        self.stdout.write(
            json.dumps(
                {
                    "slug": result.connector.slug,
                    "webhook_secret": result.webhook_secret,
                    "api_token": result.api_token,
                }
            )
        )


def _messages(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{field}: {msg}" for field, msgs in exc.message_dict.items() for msg in msgs]
    return list(exc.messages)
