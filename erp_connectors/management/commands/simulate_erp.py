"""manage.py simulate_erp SLUG --secret whsec_…: play an ERP against a running platform.

Sends correctly signed stock and price webhooks over real HTTP at a steady rate, with
re-deliveries and out-of-order updates mixed in, then reports how the platform answered and,
with --wait, how the events were applied. Every run is bounded in requests and in time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser
from standardwebhooks.webhooks import Webhook

from catalog.services import Outcome, ProductItem, product_upsert

# Just over a multiple of 3 s, the TCP SYN retransmission interval (requests' advice).
CONNECT_TIMEOUT = 3.05
# Sends that could not start by this long after their scheduled time are dropped, so a
# platform that stops answering cannot keep the run going for ever.
LATE_SEND_GRACE_SECONDS = 30.0
STATUS_POLL_INTERVAL = 0.25
# How much older than the event it overtakes an out-of-order update claims to be.
OUT_OF_ORDER_BY = timedelta(seconds=1)
WAREHOUSE = "main"
CURRENCY = "EUR"
# Created products get this version, so an existing product is never renamed (stale).
PRODUCT_VERSION = datetime(2000, 1, 1, tzinfo=UTC)
COMPLETED = ("applied", "partially_applied", "failed")

NEW, OUT_OF_ORDER, DUPLICATE = "new", "out_of_order", "duplicate"
_OS_ERROR_RE = re.compile(r"\[Errno -?\d+\][^'\")]*")


@dataclass(frozen=True)
class Send:
    """One planned request: `at` seconds after the start, `kind` says why it is in the plan."""

    seq: int
    webhook_id: str
    body: str
    at: float
    kind: str


@dataclass(frozen=True)
class Answer:
    send: Send
    status: int | None  # None: no HTTP answer (connection error or timeout)
    duplicate: bool = False
    sent: bool = True  # False: dropped, it could not start in time
    started: float = 0.0  # seconds after the start
    latency: float = 0.0
    detail: str = ""  # why it failed: the error body or the exception


@dataclass
class Summary:
    """What was sent and how the platform answered; with --wait, how it applied the events."""

    url: str
    rate: float
    concurrency: int
    answers: list[Answer]
    elapsed: float
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> status document
    pending: int = 0
    waited: float | None = None

    @property
    def sent(self) -> list[Answer]:
        return [a for a in self.answers if a.sent]

    @property
    def stored_ids(self) -> list[str]:
        """Ids the platform has stored: answered 202, or 200 as a duplicate."""
        stored = (a.send.webhook_id for a in self.answers if a.status in (200, 202))
        return list(dict.fromkeys(stored))

    @property
    def server_errors(self) -> int:
        return sum(1 for a in self.answers if a.status is not None and a.status >= 500)

    @property
    def connection_errors(self) -> int:
        return sum(1 for a in self.sent if a.status is None)

    def lines(self) -> list[str]:
        kinds = Counter(a.send.kind for a in self.answers)
        sent = self.sent
        starts = sorted(a.started for a in sent)
        spread = starts[-1] - starts[0] if starts else 0.0
        achieved = f"{(len(starts) - 1) / spread:.1f}/s" if spread > 0 else "-"
        asked = f"{self.rate:g}/s" if self.rate else "unthrottled"
        out = [
            f"target      {self.url}",
            f"planned     {len(self.answers)} requests: {kinds[NEW] + kinds[OUT_OF_ORDER]} events "
            f"({kinds[OUT_OF_ORDER]} out of order), {kinds[DUPLICATE]} duplicates",
            f"sent        {len(sent)} in {self.elapsed:.2f} s: {achieved} achieved "
            f"(asked {asked}, concurrency {self.concurrency})",
        ]
        answered = Counter(
            (a.status, a.duplicate) for a in self.answers if a.status is not None
        ).items()
        details = {a.status: a.detail for a in reversed(self.answers) if a.detail}
        for (status, duplicate), count in sorted(answered):
            label = "duplicate" if duplicate else _phrase(status)
            note = f"  e.g. {details[status]}" if status >= 300 and status in details else ""
            out.append(f"  {status} {label:<20}{count:>7}{note}")
        if self.connection_errors:
            first = next(a.detail for a in sent if a.status is None)
            out.append(f"  connection errors       {self.connection_errors:>7}  e.g. {first}")
        if len(sent) < len(self.answers):
            out.append(f"  not sent (too late)     {len(self.answers) - len(sent):>7}")
        latencies = [a.latency for a in sent if a.status is not None]
        out.append(f"latency     {_percentiles(latencies)}")
        if self.waited is not None:
            out.extend(self._apply_lines())
        return out

    def _apply_lines(self) -> list[str]:
        done = self.events.values()
        statuses = Counter(event["status"] for event in done)
        items = Counter()
        codes = Counter(error["code"] for event in done for error in event["errors"])
        for event in done:
            items.update(event["items"])
        out = [
            f"completed   {len(done)} of {len(done) + self.pending} events after "
            f"{self.waited:.1f} s: " + ", ".join(f"{statuses[s]} {s}" for s in COMPLETED),
            f"items       {items['total']}: {items['applied']} applied, {items['stale']} stale, "
            f"{items['failed']} failed"
            + (f" ({', '.join(f'{c} {n}' for c, n in sorted(codes.items()))})" if codes else ""),
        ]
        lags = [
            (_parse_time(e["completed_at"]) - _parse_time(e["received_at"])).total_seconds()
            for e in done
        ]
        out.append(f"lag         202 -> completed: {_percentiles(lags)}")
        if self.pending:
            out.append(f"pending     {self.pending} events not completed when the wait ended")
        return out


# -- the sender ---------------------------------------------------------------------------
def send_webhook(
    session: requests.Session, url: str, secret: str, send: Send, read_timeout: float
) -> Answer:
    """POST one event signed as the Standard Webhooks spec says, and time the answer."""
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": send.webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(send.webhook_id, now, send.body),
    }
    began = time.monotonic()
    try:
        response = session.post(
            url, data=send.body.encode(), headers=headers, timeout=(CONNECT_TIMEOUT, read_timeout)
        )
    except requests.RequestException as exc:
        # urllib3 wraps the cause in several layers; the OS error says it best.
        cause = _OS_ERROR_RE.search(str(exc))
        reason = cause.group() if cause else str(exc)[:160]
        return Answer(send, None, detail=f"{type(exc).__name__}: {reason}")
    latency = time.monotonic() - began
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = ""
    if response.status_code >= 300:
        errors = body.get("errors") if isinstance(body, dict) else None
        detail = (
            "; ".join(f"{e.get('path')}: {e.get('message')}" for e in errors[:2])
            if errors
            else response.text
        )[:200]
    duplicate = isinstance(body, dict) and body.get("duplicate") is True
    return Answer(send, response.status_code, duplicate, latency=latency, detail=detail)


# -- the plan -----------------------------------------------------------------------------
def plan_sends(
    *,
    count: int,
    rate: float,
    event_type: str,
    items: int,
    skus: int,
    duplicates: float,
    out_of_order: float,
    rng: random.Random,
    start: datetime,
    run_id: str,
) -> list[Send]:
    """Plan `count` requests: new events, some re-sent as they were, some overtaken.

    New events carry updated_at = start + their scheduled time (plus a microsecond per
    sequence number, so no two tie). An out-of-order event repeats the keys of an earlier new
    event with other values and an updated_at older than that event's; a duplicate re-sends
    an earlier event's id and body unchanged. The first request is always a new event.
    """
    kinds = [DUPLICATE] * round(count * duplicates) + [OUT_OF_ORDER] * round(count * out_of_order)
    kinds = kinds[: count - 1]
    kinds += [NEW] * (count - 1 - len(kinds))
    rng.shuffle(kinds)
    pool = [f"SKU-{n:05d}" for n in range(1, skus + 1)]
    plan: list[Send] = []
    fresh: list[tuple[str, list[str], datetime]] = []  # (type, skus, updated_at) of NEW
    for seq, kind in enumerate([NEW, *kinds], start=1):
        at = (seq - 1) / rate if rate else 0.0
        if kind == DUPLICATE:
            original = rng.choice([s for s in plan if s.kind != DUPLICATE])
            plan.append(Send(seq, original.webhook_id, original.body, at, kind))
            continue
        if kind == NEW:
            kind_type = rng.choice(["stock", "price"]) if event_type == "mixed" else event_type
            chosen = rng.sample(pool, min(items, len(pool)))
            updated_at = start + timedelta(seconds=at, microseconds=seq)
            fresh.append((kind_type, chosen, updated_at))
        else:
            kind_type, chosen, newer = rng.choice(fresh)
            updated_at = newer - OUT_OF_ORDER_BY
        body = _event_body(kind_type, chosen, updated_at, rng)
        plan.append(Send(seq, f"sim-{run_id}-{seq:06d}", body, at, kind))
    return plan


def _event_body(kind: str, skus: list[str], updated_at: datetime, rng: random.Random) -> str:
    stamp = updated_at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if kind == "stock":
        items = [
            {"sku": s, "warehouse": WAREHOUSE, "quantity": rng.randint(0, 500), "updated_at": stamp}
            for s in skus
        ]
    else:
        items = [
            {
                "sku": s,
                "currency": CURRENCY,
                "amount": f"{rng.randint(100, 99_999) / 100:.2f}",
                "updated_at": stamp,
            }
            for s in skus
        ]
    return json.dumps(
        {"type": f"{kind}.updated", "timestamp": stamp, "data": {"items": items}},
        separators=(",", ":"),
    )


# -- running it ---------------------------------------------------------------------------
class _SessionPerThread:
    """One requests.Session (one connection pool) per worker thread; all closed at the end."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        for session in self._all:
            session.close()


@contextmanager
def _pool(concurrency: int) -> Iterator[tuple[ThreadPoolExecutor, _SessionPerThread]]:
    sessions = _SessionPerThread()
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="erp") as executor:
            yield executor, sessions
    finally:
        sessions.close()


def run_sends(
    plan: list[Send], *, url: str, secret: str, concurrency: int, timeout: float, deadline: float
) -> tuple[list[Answer], float]:
    """Send the plan on schedule with at most `concurrency` requests in flight."""
    start = time.monotonic()

    def one(send: Send) -> Answer:
        now = time.monotonic()
        if now - start > deadline:
            return Answer(send, None, sent=False)
        if start + send.at > now:
            time.sleep(start + send.at - now)
        started = time.monotonic() - start
        answer = send_webhook(sessions.get(), url, secret, send, timeout)
        return dataclasses.replace(answer, started=started)

    with _pool(concurrency) as (executor, sessions):
        answers = list(executor.map(one, plan))
    return answers, time.monotonic() - start


def poll_events(
    *, base: str, token: str, ids: list[str], concurrency: int, timeout: float, limit: float
) -> tuple[dict[str, dict[str, Any]], float]:
    """GET each event's status until all have completed or `limit` seconds have passed."""
    headers = {"Authorization": f"Bearer {token}"}
    done: dict[str, dict[str, Any]] = {}
    start = time.monotonic()

    def one(webhook_id: str) -> dict[str, Any] | None:
        try:
            response = sessions.get().get(
                f"{base}/{quote(webhook_id, safe='')}",
                headers=headers,
                timeout=(CONNECT_TIMEOUT, timeout),
            )
        except requests.RequestException:
            return None  # asked again in the next round
        if response.status_code != HTTPStatus.OK:
            raise CommandError(f"the status API answered {response.status_code}: {response.text}")
        return response.json()

    with _pool(concurrency) as (executor, sessions):
        while time.monotonic() - start < limit:
            pending = [i for i in ids if i not in done]
            for webhook_id, event in zip(pending, executor.map(one, pending), strict=True):
                if event is not None and event["status"] in COMPLETED:
                    done[webhook_id] = event
            if len(done) == len(ids):
                break
            time.sleep(STATUS_POLL_INTERVAL)
    return done, time.monotonic() - start


class Command(BaseCommand):
    help = (
        "Send signed stock/price webhooks to a running platform as an ERP would, at a given "
        "rate and concurrency, with duplicates and out-of-order updates; print how the "
        "platform answered (and, with --wait, how it applied them). Exits non-zero on any "
        "5xx or connection error, or when --wait ends with events still pending."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Connector slug (the webhook URL's last part).")
        parser.add_argument("--secret", required=True, metavar="whsec_…", help="Webhook secret.")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Platform base URL.")
        parser.add_argument(
            "--rate", type=_at_least(0.0, float), default=20.0, help="Requests/s; 0: no pacing."
        )
        size = parser.add_mutually_exclusive_group()
        size.add_argument("--events", type=_at_least(1), help="Requests to send (default 100).")
        size.add_argument(
            "--duration", type=_at_least(0.1, float), help="Send for this many seconds instead."
        )
        parser.add_argument("--concurrency", type=_at_least(1), default=4)
        parser.add_argument(
            "--items", type=_at_least(1), default=10, help="Items per event (≤ 1000)."
        )
        parser.add_argument("--type", choices=("stock", "price", "mixed"), default="stock")
        parser.add_argument(
            "--skus", type=_at_least(1), default=100, help="SKU pool: SKU-00001 … SKU-<N>."
        )
        parser.add_argument(
            "--duplicates",
            type=_fraction,
            default=0.1,
            help="Fraction re-sent with the same webhook-id and body.",
        )
        parser.add_argument(
            "--out-of-order",
            type=_fraction,
            default=0.1,
            help="Fraction sent with an older updated_at after a newer one.",
        )
        parser.add_argument(
            "--create-products",
            action="store_true",
            help="Create the SKU pool in this platform's database first (existing ones stay).",
        )
        parser.add_argument("--timeout", type=_at_least(0.1, float), default=10.0, help="Read s.")
        parser.add_argument("--seed", type=int, help="Random seed, for a repeatable plan.")
        parser.add_argument(
            "--wait", action="store_true", help="Poll the event status API until applied."
        )
        parser.add_argument("--wait-timeout", type=_at_least(0.1, float), default=60.0)
        parser.add_argument("--token", help="API token for the status API (needed by --wait).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["wait"] and not options["token"]:
            raise CommandError("--wait needs --token (the connector's API token)")
        if options["items"] > 1000:
            raise CommandError("--items must be at most 1000 (the per-event limit)")
        if options["duplicates"] + options["out_of_order"] >= 1:
            raise CommandError("--duplicates plus --out-of-order must stay below 1")
        rate, duration = options["rate"], options["duration"]
        if duration is not None and not rate:
            raise CommandError("--duration needs a --rate above 0")
        count = math.ceil(rate * duration) if duration is not None else options["events"] or 100
        slug, base = options["slug"], options["url"].rstrip("/")
        try:
            Webhook(options["secret"])
        except Exception as exc:  # the package raises several types for a bad secret
            raise CommandError(f"--secret is not a usable webhook secret: {exc}") from exc

        if options["create_products"]:
            created = _create_products(options["skus"])
            self.stdout.write(f"products    {options['skus']} in the pool, {created} created")

        plan = plan_sends(
            count=count,
            rate=rate,
            event_type=options["type"],
            items=options["items"],
            skus=options["skus"],
            duplicates=options["duplicates"],
            out_of_order=options["out_of_order"],
            rng=random.Random(options["seed"]),
            start=datetime.now(UTC),
            run_id=secrets.token_hex(4),
        )
        url = f"{base}/webhooks/erp/{slug}/"
        span = plan[-1].at
        answers, elapsed = run_sends(
            plan,
            url=url,
            secret=options["secret"],
            concurrency=options["concurrency"],
            timeout=options["timeout"],
            deadline=duration if duration is not None else span + LATE_SEND_GRACE_SECONDS,
        )
        summary = Summary(url, rate, options["concurrency"], answers, elapsed)

        if options["wait"]:
            ids = summary.stored_ids
            summary.events, summary.waited = poll_events(
                base=f"{base}/api/v1/erp/{slug}/events",
                token=options["token"],
                ids=ids,
                concurrency=options["concurrency"],
                timeout=options["timeout"],
                limit=options["wait_timeout"],
            )
            summary.pending = len(ids) - len(summary.events)

        self.stdout.write("\n".join(summary.lines()))
        problems = []
        if summary.server_errors:
            problems.append(f"{summary.server_errors} answers were 5xx")
        if summary.connection_errors:
            problems.append(f"{summary.connection_errors} requests got no answer")
        if summary.pending:
            problems.append(f"{summary.pending} events were not completed in time")
        if problems:
            raise CommandError("; ".join(problems))


def _create_products(skus: int) -> int:
    items = [
        ProductItem(
            sku=f"SKU-{n:05d}",
            name=f"Simulated product {n}",
            active=None,
            updated_at=PRODUCT_VERSION,
        )
        for n in range(1, skus + 1)
    ]
    return sum(1 for result in product_upsert(items=items) if result.outcome is Outcome.APPLIED)


def _percentiles(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    ordered = sorted(seconds)

    def rank(p: float) -> float:  # nearest rank
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    parts = [f"p{p} {rank(p) * 1000:.1f} ms" for p in (50, 95, 99)]
    return "  ".join([*parts, f"max {ordered[-1] * 1000:.1f} ms"])


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return ""


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _at_least(low: float, kind: type = int) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}")
        return value

    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError("must be a fraction from 0 to below 1")
    return value
