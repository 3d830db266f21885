"""Fixtures for the ERP connector tests: a connector, signed requests, no broker needed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from erp_connectors.services import ConnectorCredentials, connector_save


@pytest.fixture(autouse=True)
def _no_fast_path(settings: Any) -> None:
    # Outbox rows stay unpublished: these tests look at what is stored, not at a broker.
    settings.OUTBOX_FAST_PATH = False


@pytest.fixture
def connector(db: None) -> ConnectorCredentials:
    return connector_save(slug="acme", name="ACME ERP")


@pytest.fixture
def other_connector(db: None) -> ConnectorCredentials:
    return connector_save(slug="globex", name="Globex ERP")


def stock_body(*items: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body = {
        "type": "stock.updated",
        "timestamp": "2026-11-22T10:00:00Z",
        "data": {
            "items": list(items)
            or [
                {
                    "sku": "SKU-1",
                    "warehouse": "main",
                    "quantity": 12,
                    "updated_at": "2026-11-22T09:59:58.120Z",
                }
            ]
        },
    }
    body.update(overrides)
    return body


def price_body(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "price.updated",
        "timestamp": "2026-11-22T10:00:00Z",
        "data": {
            "items": list(items)
            or [
                {
                    "sku": "SKU-1",
                    "currency": "EUR",
                    "amount": "19.99",
                    "updated_at": "2026-11-22T09:59:58.120Z",
                }
            ]
        },
    }


def signed_headers(
    secret: str, webhook_id: str, body: str | bytes, at: datetime | None = None
) -> dict[str, str]:
    """Sign as docs/integrators.md's standard-library recipe does: over the raw body bytes,
    which need not be UTF-8 (a signed body that is not is then refused as 400)."""
    timestamp = str(int((at or datetime.now(UTC)).timestamp()))
    raw = body.encode() if isinstance(body, str) else body
    encoded = secret.removeprefix("whsec_")
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))  # unpadded is allowed
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


@dataclass
class Sender:
    """Posts webhooks the way an ERP does: JSON body, Standard Webhooks signature."""

    client: Client
    credentials: ConnectorCredentials

    @property
    def url(self) -> str:
        return f"/webhooks/erp/{self.credentials.connector.slug}/"

    def send(
        self,
        body: dict[str, Any] | str | bytes,
        webhook_id: str = "evt_1",
        *,
        secret: str | None = None,
        at: datetime | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        if isinstance(body, dict):
            body = json.dumps(body)
        raw = body.encode() if isinstance(body, str) else body
        signed = signed_headers(secret or self.credentials.webhook_secret, webhook_id, raw, at=at)
        signed.update(headers or {})
        return self.client.post(self.url, data=raw, content_type="application/json", headers=signed)


@pytest.fixture
def sender(client: Client, connector: ConnectorCredentials) -> Sender:
    return Sender(client, connector)


@pytest.fixture
def bearer(connector: ConnectorCredentials) -> Callable[..., dict[str, str]]:
    def headers(token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or connector.api_token}"}

    return headers
