"""Signed webhook requests, made just before a run so the load generator only replays bytes.

Every request has its own webhook-id, and its signature timestamp is taken when the batch is
made: the platform accepts it for five minutes, far longer than any run here.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from standardwebhooks.webhooks import Webhook

ITEMS_PER_EVENT = 10
WAREHOUSES = ("main", "eu", "us")
CURRENCIES = ("EUR", "USD")


@dataclass(frozen=True)
class SignedRequest:
    path: str
    webhook_id: str
    headers: dict[str, str]
    body: bytes

    def raw(self, host: str) -> bytes:
        """Return the whole HTTP/1.1 request (keep-alive), as wrk sends it."""
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {host}",
            "Content-Type: application/json",
            f"Content-Length: {len(self.body)}",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


class EventFactory:
    """Make signed stock and price events (alternately) over a pool of known skus.

    Item versions (`updated_at`) grow with every item made, so a worker applies them instead
    of finding them stale, whatever order they are sent in.
    """

    def __init__(
        self, *, secret: str, skus: Sequence[str], items: int = ITEMS_PER_EVENT, seed: int = 1
    ) -> None:
        self._webhook = Webhook(secret)
        self._skus = list(skus)
        self._items = items
        self._random = random.Random(seed)
        self._serial = itertools.count()
        self._version = itertools.count()
        self._version_base = datetime.now(UTC) - timedelta(days=1)

    def make(self, count: int, *, path: str, id_prefix: str) -> list[SignedRequest]:
        signed_at = datetime.now(UTC)
        return [self._one(path, id_prefix, next(self._serial), signed_at) for _ in range(count)]

    def _one(self, path: str, id_prefix: str, serial: int, signed_at: datetime) -> SignedRequest:
        webhook_id = f"{id_prefix}-{serial}"
        body = json.dumps(self._document(serial, signed_at), separators=(",", ":"))
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": self._webhook.sign(webhook_id, signed_at, body),
        }
        return SignedRequest(path, webhook_id, headers, body.encode())

    def _document(self, serial: int, signed_at: datetime) -> dict:
        stock = serial % 2 == 0
        items = []
        for sku in self._random.sample(self._skus, self._items):
            version = self._version_base + timedelta(microseconds=next(self._version))
            item: dict[str, object] = {"sku": sku, "updated_at": _rfc3339(version)}
            if stock:
                item["warehouse"] = self._random.choice(WAREHOUSES)
                item["quantity"] = self._random.randrange(0, 10_000)
            else:
                item["currency"] = self._random.choice(CURRENCIES)
                item["amount"] = str(Decimal(self._random.randrange(100, 100_000)) / 100)
            items.append(item)
        return {
            "type": "stock.updated" if stock else "price.updated",
            "timestamp": _rfc3339(signed_at),
            "data": {"items": items},
        }


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def write_replay_files(
    requests: Sequence[SignedRequest], *, prefix: Path, host: str, threads: int
) -> None:
    """Write PREFIX.0 … PREFIX.<threads-1> for lua/replay.lua, requests dealt round-robin."""
    for thread in range(threads):
        with Path(f"{prefix}.{thread}").open("wb") as out:
            for request in requests[thread::threads]:
                raw = request.raw(host)
                out.write(f"{len(raw)}\n".encode())
                out.write(raw)
