"""Webhook-path benchmarks: intake vs a one-INSERT peer, end-to-end lag, storefront reads.

    .venv/bin/python -m benchmarks.webhooks            # the full run, 10 to 15 minutes
    .venv/bin/python -m benchmarks.webhooks --quick    # a smoke run, 2 to 3 minutes

Needs wrk (`apt-get install -y wrk`), `psql`, and a PostgreSQL server that the role in
BENCH_POSTGRES_URL may create databases on (default postgres@127.0.0.1:5432, trust auth).
Creates a fresh database there and a private redis-server on a free port, starts the
platform's processes with the launcher's own commands (syncplatform/launcher.py), runs the
phases below, prints the figures against the targets and writes everything measured to
benchmarks/results/*.json. The database, Redis and every process are removed at the end,
whatever happens (Ctrl-C and SIGTERM included).

1. intake vs peer (web only): wrk at 32 connections replays pre-signed webhooks to the
   intake and the same bytes to a one-INSERT Django view served by the same gunicorn,
   alternating, several rounds. Nothing consumes the queue yet, so both get the machine.
2. The rest of the launcher's topology starts: relay, worker-high, worker-default,
   worker-low, beat, Flower. Storefront idle: GET /api/v1/products/<sku> latency.
3. end-to-end lag: a paced (open-loop) sender at 200 events/s of 10 items, then at a lower
   rate; lag per event is completed_at - received_at, read from the database afterwards.
4. storefront during load: the reads of 2 again, beside paced webhooks at the lower rate and
   at 200 events/s (compared to the median p99 of every idle window of the run).
5. storefront idle vs storm: idle reads, then the same reads beside a saturating wrk storm of
   signed webhooks at 32 connections, alternating for several rounds; the storm's backlog is
   applied before each idle window. The median of the rounds' p99 ratios is the figure.

The machine is shared: every run also records the CPU that processes outside the benchmark
used, and the hypervisor's steal time, and flags runs where either took a noticeable share.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil

from .loadgen import (
    PacedResult,
    WrkInBackground,
    WrkResult,
    percentile,
    send_paced,
    wrk_binary,
    wrk_run,
)
from .payloads import EventFactory, write_replay_files
from .stack import (
    DEFAULT_ADMIN_URL,
    BenchDatabase,
    CpuMeter,
    Process,
    RedisServer,
    free_port,
    manage,
    platform_env,
    tear_down,
    wait_for,
    write_results,
)

PEER_SETTINGS = "benchmarks.peer.settings"
PEER_PATH = "/bench/peer/insert"
CONNECTOR_SLUG = "bench"

# Targets (the brief): intake >= 0.6x the peer's req/s and p99 <= 2x the peer's p99 at 32
# connections; end-to-end p99 < 1 s at 200 events/s; storefront p99 in a storm <= 2x idle.
TARGET_RPS_RATIO = 0.6
TARGET_P99_RATIO = 2.0
TARGET_E2E_P99_MS = 1000.0
TARGET_READ_P99_RATIO = 2.0


# A run counts as disturbed when processes outside the benchmark, or the hypervisor's steal,
# took more than this share of a core on average: the figures of that run are suspect.
DISTURBED_CORES = 0.25


@dataclass(frozen=True)
class Plan:
    name: str
    rounds: int  # intake/peer pairs
    storm_rounds: int  # storefront idle/storm pairs
    ab_seconds: int  # one wrk run
    warmup_seconds: int
    e2e_seconds: int
    read_seconds: int
    drain_timeout: int  # longest wait for a phase's events to be applied
    # A paced sender that fell behind its schedule stops this long after the schedule's end.
    paced_grace_seconds: float
    connections: int = 32
    wrk_threads: int = 1
    e2e_rate: float = 200.0
    # A second paced run at a rate this machine can sustain, to show the lag unsaturated.
    e2e_low_rate: float = 50.0
    items_per_event: int = 10
    read_connections: int = 4
    # Each read connection pauses this long between requests: reads are a steady trickle
    # (about 4 x 1000/(20 + latency) per second), not a second storm.
    read_pause_ms: int = 20
    skus: int = 2000
    # Upper bound of the req/s one wrk run can do: requests are made for this rate until a
    # target's real rate is known, then for 2.5 times that (wrk stops, and says so, if a
    # run ever runs out of unique requests).
    max_rate: int = 2500


FULL = Plan(
    name="full",
    rounds=5,
    storm_rounds=5,
    ab_seconds=10,
    warmup_seconds=4,
    e2e_seconds=25,
    read_seconds=15,
    drain_timeout=120,
    paced_grace_seconds=30,
)
QUICK = Plan(
    name="quick",
    rounds=1,
    storm_rounds=1,
    ab_seconds=4,
    warmup_seconds=2,
    e2e_seconds=5,
    read_seconds=4,
    drain_timeout=30,
    paced_grace_seconds=5,
)


class Bench:
    """The running stack and what the phases share."""

    def __init__(self, plan: Plan, run_dir: Path, redis: RedisServer) -> None:
        self.plan = plan
        self.run_dir = run_dir
        self.redis = redis
        self.port = 0
        self.storefront_port = 0
        self.skus: list[str] = []
        self.sku_file = run_dir / "skus.txt"
        self.factory: EventFactory | None = None
        self.processes: dict[str, Process] = {}
        self.background: list[WrkInBackground] = []
        self.best_rps: dict[str, float] = {}
        # The launcher's default; the benchmark passes the environment on, so it may differ.
        self.high_concurrency = int(os.environ.get("WORKER_HIGH_CONCURRENCY") or 2)
        self.meter = CpuMeter(
            {
                "web": lambda: self._pids("web"),
                "storefront": lambda: self._pids("storefront"),
                "worker_high": lambda: self._pids("worker-high"),
                "relay": lambda: self._pids("relay"),
                "other_platform": lambda: [
                    pid
                    for name in ("worker-default", "worker-low", "beat", "flower")
                    for pid in self._pids(name)
                ],
                "postgres": postgres_processes,
                "redis": lambda: [self.redis.process.pid] if self.redis.process else [],
                "wrk": _wrk_children,
                "driver": lambda: [os.getpid()],
            },
            reaped_group="wrk",
            pg_ended=postgres_ended,
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    @property
    def intake_path(self) -> str:
        return f"/webhooks/erp/{CONNECTOR_SLUG}/"

    def _pids(self, name: str) -> list[int]:
        process = self.processes.get(name)
        return process.pids() if process else []

    def start(self, name: str, command: str, env: dict[str, str]) -> Process:
        self.processes[name] = Process(name, command, env, self.run_dir).start()
        return self.processes[name]

    def events(self, count: int, path: str, id_prefix: str) -> list:
        assert self.factory is not None
        return self.factory.make(count, path=path, id_prefix=id_prefix)

    def replay_args(self, path: str, seconds: float, id_prefix: str) -> dict[str, Any]:
        """Make and write the signed requests for one wrk run; return wrk's arguments."""
        known = self.best_rps.get(path)
        rate = self.plan.max_rate if known is None else min(self.plan.max_rate, 2.5 * known + 100)
        requests = self.events(int(rate * seconds), path, id_prefix)
        prefix = self.run_dir / f"replay-{id_prefix}"
        write_replay_files(requests, prefix=prefix, host=self.host, threads=self.plan.wrk_threads)
        return {
            "url": self.base_url,
            "script": "replay.lua",
            "args": [str(prefix)],
            "connections": self.plan.connections,
            "threads": self.plan.wrk_threads,
            "seconds": seconds,
        }

    def replay(
        self, path: str, seconds: float, id_prefix: str
    ) -> tuple[WrkResult, dict, list[int]]:
        """Replay signed webhooks with wrk; also return how its connections spread over
        the web's workers, sampled a second in."""
        args = self.replay_args(path, seconds, id_prefix)
        spread: list[list[int]] = []
        sampler = threading.Timer(
            1.0, lambda: spread.append(connections_per_worker(self, "web", self.port))
        )
        before = self.meter.read()
        sampler.start()
        result = wrk_run(**args)
        sampler.join()
        cpu = self.meter.used(before, self.meter.read())
        _remove_replay_files(self.run_dir, id_prefix)
        self.best_rps[path] = max(self.best_rps.get(path, 0.0), result.rps)
        return result, cpu, spread[0] if spread else []

    def reads(self, seconds: float) -> WrkResult:
        """Shoppers' reads, on the storefront pool as the launcher runs it."""
        return wrk_run(
            url=f"http://127.0.0.1:{self.storefront_port}",
            script="products.lua",
            args=[str(self.sku_file), str(self.plan.read_pause_ms)],
            connections=self.plan.read_connections,
            threads=1,
            seconds=seconds,
        )

    def stop_all(self) -> None:
        for storm in self.background:
            storm.kill()
        for process in reversed(list(self.processes.values())):
            process.stop()


def _wrk_children() -> list[int]:
    """wrk processes of this benchmark that are running now (a storm in the background)."""
    pids = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.name() == "wrk":
                pids.append(child.pid)
    return pids


# -- setup --------------------------------------------------------------------------------
def postgres_processes() -> list[int]:
    """The backends of the benchmark's database, and the server's WAL writer, checkpointer
    and background writer (shared with the server's other databases, but the benchmark is
    what writes while it runs)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " OR backend_type IN ('walwriter', 'checkpointer', 'background writer')"
        )
        return [row[0] for row in cursor.fetchall()]


def postgres_ended() -> tuple[float, int, int]:
    """CPU of the server's ended backends, and sessions opened on this database and on all.

    The postmaster is the parent of every backend and reaps them, so their CPU accrues in
    its children's times; pg_stat_database counts the sessions each database has had.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_backend_pid(),"
            " coalesce(sum(sessions) FILTER (WHERE datname = current_database()), 0),"
            " coalesce(sum(sessions), 0) FROM pg_stat_database"
        )
        backend, ours, everyone = cursor.fetchone()
    postmaster = psutil.Process(psutil.Process(backend).ppid()).cpu_times()
    return postmaster.children_user + postmaster.children_system, int(ours), int(everyone)


def seed_catalog(count: int) -> list[str]:
    """Create `count` products with stock in two warehouses and a EUR price (services)."""
    from catalog.services import (
        Outcome,
        PriceItem,
        ProductItem,
        StockItem,
        price_apply,
        product_upsert,
        stock_apply,
    )

    # Older than every version the event factory makes, so events overwrite these.
    seeded_at = datetime.now(UTC) - timedelta(days=2)
    skus = [f"BENCH-{n:05d}" for n in range(count)]
    results = product_upsert(
        items=[ProductItem(sku, f"Benchmark product {sku}", True, seeded_at) for sku in skus]
    )
    results += stock_apply(
        items=[StockItem(sku, w, 100, seeded_at) for sku in skus for w in ("main", "eu")]
    )
    results += price_apply(
        items=[PriceItem(sku, "EUR", Decimal("9.99"), seeded_at) for sku in skus]
    )
    failed = [r for r in results if r.outcome != Outcome.APPLIED]
    if failed:
        raise RuntimeError(f"seeding the catalog failed: {failed[:3]}")
    return skus


def create_peer_table() -> None:
    from django.db import connection

    from .peer.views import PEER_TABLE_SQL

    with connection.cursor() as cursor:
        cursor.execute(PEER_TABLE_SQL)


def settle_backlog(redis: RedisServer) -> int:
    """Drop queued work left by a phase without workers: flush the broker, close the outbox.

    Those events stay `accepted`; later phases only look at their own webhook ids.
    """
    from django.utils import timezone

    from syncplatform.outbox.models import OutboxMessage

    redis.client().flushdb()
    return OutboxMessage.objects.filter(published_at__isnull=True).update(
        published_at=timezone.now()
    )


# -- phases -------------------------------------------------------------------------------
def phase_intake_vs_peer(bench: Bench) -> dict[str, Any]:
    """Alternate peer and intake runs; the medians of the undisturbed pairs are the figures.

    A pair in which either run was disturbed (another process or the hypervisor took more
    than DISTURBED_CORES) is repeated, at most `rounds` extra times, so a neighbour's test
    suite does not decide the ratio.
    """
    plan = bench.plan
    targets = {"peer": PEER_PATH, "intake": bench.intake_path}
    for name, path in targets.items():
        bench.replay(path, plan.warmup_seconds, f"warm-{name}")
    runs: list[dict[str, Any]] = []
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    while len(pairs) < 2 * plan.rounds:
        if sum(not _pair_disturbed(pair) for pair in pairs) >= plan.rounds:
            break
        round_number = len(pairs) + 1
        pair = []
        for name, path in targets.items():
            result, cpu, spread = bench.replay(path, plan.ab_seconds, f"ab{round_number}-{name}")
            row = {"round": round_number, "target": name, **_wrk_row(result, cpu)}
            row["connections_per_worker"] = spread
            runs.append(row)
            pair.append(row)
            print(
                f"  round {round_number} {name:6s} {result.rps:7.1f} req/s"
                f"  p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms"
                f"  statuses {result.statuses}  {_disk_brief(cpu)}"
                f"  connections per worker {row['connections_per_worker']}"
                f"{_disturbance_note(row)}",
                flush=True,
            )
        pairs.append((pair[0], pair[1]))
    clean = [pair for pair in pairs if not _pair_disturbed(pair)]
    used = clean or pairs
    summary: dict[str, Any] = {
        "peer": _median_row([peer for peer, _ in used]),
        "intake": _median_row([intake for _, intake in used]),
        "pairs_run": len(pairs),
        "pairs_used": len(used),
        "all_pairs_disturbed": not clean,
    }
    summary["ratio"] = {
        "rps": summary["intake"]["rps"] / summary["peer"]["rps"],
        "p50": summary["intake"]["p50_ms"] / summary["peer"]["p50_ms"],
        "p99": summary["intake"]["p99_ms"] / summary["peer"]["p99_ms"],
        "rps_per_round": [i["rps"] / p["rps"] for p, i in used],
        "p99_per_round": [i["p99_ms"] / p["p99_ms"] for p, i in used],
    }
    return {"runs": runs, "summary": summary}


def _pair_disturbed(pair: tuple[dict[str, Any], dict[str, Any]]) -> bool:
    return any(_disturbance(row) > DISTURBED_CORES for row in pair)


def phase_reads(bench: Bench, label: str) -> dict[str, Any]:
    spread: list[list[int]] = []
    sampler = threading.Timer(
        1.0,
        lambda: spread.append(connections_per_worker(bench, "storefront", bench.storefront_port)),
    )
    before = bench.meter.read()
    sampler.start()
    result = bench.reads(bench.plan.read_seconds)
    sampler.join()
    row = _wrk_row(result, bench.meter.used(before, bench.meter.read()))
    row["read_connections_per_worker"] = spread[0] if spread else []
    print(
        f"  storefront {label}: {_brief(result)},"
        f" connections per worker {row['read_connections_per_worker']}{_disturbance_note(row)}",
        flush=True,
    )
    return row


def connections_per_worker(bench: Bench, name: str, port: int) -> list[int]:
    """How wrk's keep-alive connections to `port` are spread over the workers of gunicorn
    `name` ("web" or "storefront"), most first.

    gunicorn keeps a connection on the worker that accepted it, so 4 connections may land
    2+2 or 4+0; in the latter one worker's threads take turns at one interpreter lock.
    """
    process = bench.processes[name]
    master = process.process.pid if process.process else None
    counts = []
    for pid in process.pids():
        if pid == master:
            continue
        with contextlib.suppress(psutil.Error):
            counts.append(
                sum(
                    1
                    for conn in psutil.Process(pid).net_connections(kind="tcp")
                    if conn.status == psutil.CONN_ESTABLISHED
                    and conn.laddr
                    and conn.laddr.port == port
                )
            )
    return sorted(counts, reverse=True)


def phase_e2e(bench: Bench, *, id_prefix: str, rate: float, seconds: float) -> dict[str, Any]:
    requests = bench.events(int(rate * seconds), bench.intake_path, id_prefix)
    worker = bench.processes["worker-high"]
    log_offset = len(worker.log())
    before = bench.meter.read()
    started = time.monotonic()
    sent = send_paced(
        requests,
        host="127.0.0.1",
        port=bench.port,
        rate=rate,
        grace_seconds=bench.plan.paced_grace_seconds,
    )
    drained = wait_applied(id_prefix, timeout=bench.plan.drain_timeout)
    cpu = bench.meter.used(before, bench.meter.read())
    elapsed = time.monotonic() - started
    runtimes = task_runtimes(worker.log()[log_offset:])
    # Share of the pool's process-seconds spent inside apply_event: near 1 means the pool,
    # not the CPU, is the limit when its CPU share (cpu_cores.worker_high) is low.
    busy = runtimes["tasks"] * runtimes["mean_ms"] / 1000 if runtimes["tasks"] else 0.0
    runtimes["pool_busy"] = round(busy / (bench.high_concurrency * elapsed), 2)
    result = {
        "rate": rate,
        "seconds": seconds,
        "sender": sent.summary(),
        "drained": drained,
        "lag": event_lags(id_prefix),
        "task_runtime": runtimes,
        "elapsed_s": round(elapsed, 1),
        # Each connection is a backend the server forks; a worker that keeps its
        # connections opens none per event.
        "pg_sessions_per_event": round(cpu.get("pg_sessions", 0) / max(1, sent.sent), 2),
        "cpu_seconds": _round_dict(cpu),
        "cpu_cores": _cores(cpu, elapsed),
    }
    print(
        f"  e2e {rate:.0f}/s: sent {sent.sent} at {sent.achieved_rate:.1f}/s,"
        f" lag p50 {result['lag']['p50_ms']:.0f} ms p99 {result['lag']['p99_ms']:.0f} ms"
        f" max {result['lag']['max_ms']:.0f} ms, {result['lag']['completed']} completed"
        f"{_disturbance_note(result)}",
        flush=True,
    )
    return result


def phase_reads_during_paced_load(bench: Bench, *, rate: float, id_prefix: str) -> dict[str, Any]:
    plan = bench.plan
    lead = 2.0
    load_seconds = plan.read_seconds + 2 * lead
    requests = bench.events(int(rate * load_seconds), bench.intake_path, id_prefix)
    outcome: dict[str, PacedResult] = {}
    sender = threading.Thread(
        target=lambda: outcome.update(
            sent=send_paced(
                requests,
                host="127.0.0.1",
                port=bench.port,
                rate=rate,
                grace_seconds=plan.paced_grace_seconds,
            )
        ),
        daemon=True,
    )
    sender.start()
    time.sleep(lead)
    reads = phase_reads(bench, f"during paced load ({rate:.0f} events/s)")
    sender.join(timeout=load_seconds + 120)
    drained = wait_applied(id_prefix, timeout=plan.drain_timeout)
    return {
        "rate": rate,
        "reads": reads,
        "webhooks": outcome["sent"].summary() if "sent" in outcome else None,
        "webhooks_drained": drained,
        "webhooks_lag": event_lags(id_prefix),
    }


def phase_reads_during_saturating_storm(bench: Bench, *, id_prefix: str) -> dict[str, Any]:
    plan = bench.plan
    lead = 2.0
    storm = WrkInBackground(
        **bench.replay_args(bench.intake_path, plan.read_seconds + 2 * lead, id_prefix)
    )
    bench.background.append(storm)
    time.sleep(lead)
    reads = phase_reads(bench, f"during saturating storm ({plan.connections} connections)")
    storm_result = storm.result()
    bench.background.remove(storm)
    _remove_replay_files(bench.run_dir, id_prefix)
    print(f"  saturating storm itself: {_brief(storm_result)}", flush=True)
    drained = wait_applied(id_prefix, timeout=plan.drain_timeout)
    return {"reads": reads, "storm": _wrk_row(storm_result, {}), "storm_drained": drained}


def phase_storefront_idle_vs_storm(bench: Bench) -> dict[str, Any]:
    """Alternate idle reads and reads in a saturating storm; the median round ratio is the figure.

    One idle window of a few thousand reads on a shared machine has a p99 anywhere from 2.5 to
    6 ms, so a ratio to a single idle window is decided by a handful of slow reads. As in the
    intake/peer phase, each round measures both sides back to back, and a round in which
    either side was disturbed is repeated, at most `storm_rounds` extra times. Each storm's
    backlog is applied before the next idle window, so idle means idle.
    """
    plan = bench.plan
    rounds: list[dict[str, Any]] = []
    while len(rounds) < 2 * plan.storm_rounds:
        if sum(not round_["disturbed"] for round_ in rounds) >= plan.storm_rounds:
            break
        number = len(rounds) + 1
        idle = phase_reads(bench, f"idle (round {number})")
        storm = phase_reads_during_saturating_storm(bench, id_prefix=f"storm{number}")
        ratio = storm["reads"]["p99_ms"] / idle["p99_ms"]
        print(f"  round {number}: storm p99 / idle p99 = {ratio:.2f}", flush=True)
        rounds.append(
            {
                "round": number,
                "idle": idle,
                **storm,
                "p99_ratio": ratio,
                "disturbed": max(_disturbance(idle), _disturbance(storm["reads"]))
                > DISTURBED_CORES,
            }
        )
    used = [round_ for round_ in rounds if not round_["disturbed"]] or rounds
    return {
        "rounds": rounds,
        "summary": {
            "rounds_run": len(rounds),
            "rounds_used": len(used),
            "all_rounds_disturbed": all(round_["disturbed"] for round_ in rounds),
            "idle_p99_ms": statistics.median(r["idle"]["p99_ms"] for r in used),
            "storm_p99_ms": statistics.median(r["reads"]["p99_ms"] for r in used),
            "storm_rps": statistics.median(r["storm"]["rps"] for r in used),
            "p99_ratio": statistics.median(r["p99_ratio"] for r in used),
            "p99_ratio_per_round": [round(r["p99_ratio"], 2) for r in used],
        },
    }


# -- reading the outcome ------------------------------------------------------------------
def wait_applied(id_prefix: str, *, timeout: float) -> dict[str, Any]:
    """Wait (bounded) until no event of this run is accepted/processing any more."""
    from erp_connectors.models import InboundEvent

    open_events = InboundEvent.objects.filter(
        webhook_id__startswith=f"{id_prefix}-",
        status__in=[InboundEvent.Status.ACCEPTED, InboundEvent.Status.PROCESSING],
    )
    started = time.monotonic()
    try:
        wait_for(lambda: not open_events.exists(), timeout=timeout, what=f"{id_prefix} applied")
    except RuntimeError:
        return {"complete": False, "open": open_events.count(), "waited_s": timeout}
    return {"complete": True, "open": 0, "waited_s": round(time.monotonic() - started, 1)}


def event_lags(id_prefix: str) -> dict[str, Any]:
    """Lag per event from received_at (stamped in the request) to completed_at (applied)."""
    from erp_connectors.models import InboundEvent

    rows = list(
        InboundEvent.objects.filter(webhook_id__startswith=f"{id_prefix}-").values_list(
            "received_at", "completed_at", "status"
        )
    )
    lags = [(done - received).total_seconds() * 1000 for received, done, _ in rows if done]
    statuses: dict[str, int] = {}
    for _, _, status in rows:
        statuses[status] = statuses.get(status, 0) + 1
    received = [r for r, _, _ in rows]
    span = (max(received) - min(received)).total_seconds() if len(received) > 1 else 0.0
    return {
        "events": len(rows),
        "completed": len(lags),
        "statuses": statuses,
        "received_rate": round((len(rows) - 1) / span, 1) if span else 0.0,
        "p50_ms": percentile(lags, 50),
        "p90_ms": percentile(lags, 90),
        "p99_ms": percentile(lags, 99),
        "max_ms": max(lags, default=math.nan),
    }


# apply_event, or apply_events when the relay sent several events in one message.
_SUCCEEDED_RE = re.compile(r"erp_connectors\.apply_events?\[[^\]]+\] succeeded in ([0-9.]+)s")


def task_runtimes(log: str) -> dict[str, Any]:
    """Celery's own 'succeeded in Ns' for the apply tasks: time inside each task.

    Under load one task applies several events, so these are per task, not per event.
    """
    runtimes = [float(value) * 1000 for value in _SUCCEEDED_RE.findall(log)]
    return {
        "tasks": len(runtimes),
        "p50_ms": percentile(runtimes, 50),
        "p99_ms": percentile(runtimes, 99),
        "mean_ms": statistics.fmean(runtimes) if runtimes else math.nan,
    }


_CPU_KEYS = (
    "web",
    "storefront",
    "worker_high",
    "relay",
    "other_platform",
    "postgres",
    "redis",
    "wrk",
    "driver",
    "other",
)


def _cores(cpu: dict[str, Any], seconds: float) -> dict[str, float]:
    """CPU seconds as average cores over the run, for the groups, other, busy and steal."""
    if not cpu or seconds <= 0:
        return {}
    keys = (*_CPU_KEYS, "unaccounted", "machine_busy", "steal", "disk_busy")
    return {key: round(cpu[key] / seconds, 2) for key in keys if key in cpu}


def _wrk_row(result: WrkResult, cpu: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "requests": result.requests,
        "seconds": round(result.seconds, 2),
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "statuses": result.statuses,
        "socket_errors": {k: v for k, v in result.socket_errors.items() if v},
        "exhausted": result.exhausted,
        "cpu_seconds": _round_dict(cpu),
        "cpu_cores": _cores(cpu, result.seconds),
    }
    if result.requests and cpu:
        row["cpu_ms_per_request"] = {
            key: round(cpu[key] * 1000 / result.requests, 3) for key in _CPU_KEYS
        }
    return row


def _disk_brief(cpu: dict[str, Any]) -> str:
    if "disk_busy" not in cpu:
        return ""
    return f"disk {cpu['disk_writes']} writes, {cpu['disk_write_ms']:.1f} ms each"


def _disturbance(row: dict[str, Any]) -> float:
    """Cores taken by what the benchmark did not start (other processes, steal), on average."""
    cores = row.get("cpu_cores") or {}
    return cores.get("other", 0.0) + cores.get("unaccounted", 0.0) + cores.get("steal", 0.0)


def _disturbance_note(row: dict[str, Any]) -> str:
    taken = _disturbance(row)
    if taken <= DISTURBED_CORES:
        return ""
    top = ", ".join(f"{name} {s:.1f}s" for name, s in row["cpu_seconds"]["other_top"].items())
    return f"  [DISTURBED: {taken:.2f} cores elsewhere{'; ' + top if top else ''}]"


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        key: statistics.median(row[key] for row in rows)
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms")
    }
    summary["rounds"] = len(rows)
    summary["non_202"] = sum(
        n for row in rows for code, n in row["statuses"].items() if code != "202"
    )
    summary["exhausted"] = sum(row["exhausted"] for row in rows)
    summary["disturbed_rounds"] = sum(_disturbance(row) > DISTURBED_CORES for row in rows)
    if all("cpu_ms_per_request" in row for row in rows):
        summary["cpu_ms_per_request"] = {
            key: round(statistics.median(row["cpu_ms_per_request"][key] for row in rows), 3)
            for key in _CPU_KEYS
        }
        summary["cpu_cores"] = {
            key: round(statistics.median(row["cpu_cores"][key] for row in rows), 2)
            for key in rows[0]["cpu_cores"]
        }
    return summary


def _round_dict(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: round(value, 3) if isinstance(value, float) else value for key, value in values.items()
    }


def _busy_cores(row: dict[str, Any]) -> float:
    """How busy the machine was during a window: an idle window should show the reads only."""
    return (row.get("cpu_cores") or {}).get("machine_busy", 0.0)


def _brief(result: WrkResult) -> str:
    return (
        f"{result.rps:.1f} req/s p50 {result.p50_ms:.1f} ms p99 {result.p99_ms:.1f} ms"
        f" max {result.max_ms:.1f} ms statuses {result.statuses}"
    )


def _remove_replay_files(run_dir: Path, id_prefix: str) -> None:
    for path in run_dir.glob(f"replay-{id_prefix}.*"):
        path.unlink(missing_ok=True)


# -- report -------------------------------------------------------------------------------
def machine_facts(db: BenchDatabase, redis: RedisServer, commands: dict[str, str]) -> dict:
    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError:
            return "?"
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if text else "?"

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpus": psutil.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": _package_version("django"),
        "celery": _package_version("celery"),
        "postgresql": db.server_version(),
        "redis": redis.version(),
        "gunicorn": version([str(Path(sys.executable).with_name("gunicorn")), "--version"]),
        "wrk": version(["wrk", "--version"]),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "commands": commands,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    """Each target of issue #3: met or not."""
    plan = results["plan"]
    ratio = results["intake_vs_peer"]["summary"]["ratio"]
    e2e = results["e2e"]
    idle = idle_reference_p99(results)
    return {
        "intake_rps": ratio["rps"] >= TARGET_RPS_RATIO,
        "intake_p99": ratio["p99"] <= TARGET_P99_RATIO,
        "e2e_p99": (
            e2e["lag"]["p99_ms"] < TARGET_E2E_P99_MS
            and e2e["drained"]["complete"]
            and e2e["sender"]["achieved_rate"] >= 0.95 * plan["e2e_rate"]
        ),
        "storefront_paced": results["storefront_paced_storm"]["reads"]["p99_ms"] / idle
        <= TARGET_READ_P99_RATIO,
        "storefront_storm": results["storefront_idle_vs_storm"]["summary"]["p99_ratio"]
        <= TARGET_READ_P99_RATIO,
    }


def idle_reference_p99(results: dict[str, Any]) -> float:
    """The idle p99 that paced loads are compared to: the median of every idle window."""
    windows = [results["storefront_idle"]] + [
        round_["idle"] for round_ in results["storefront_idle_vs_storm"]["rounds"]
    ]
    return statistics.median(window["p99_ms"] for window in windows)


def report(results: dict[str, Any]) -> str:
    plan = results["plan"]
    ok = verdicts(results)
    lines: list[str] = []
    ab = results["intake_vs_peer"]["summary"]
    peer, intake, ratio = ab["peer"], ab["intake"], ab["ratio"]
    lines.append(
        f"Intake vs one-INSERT peer: same gunicorn, wrk {plan['connections']} connections,"
        f" median of {ab['pairs_used']}"
        f"{'' if ab['all_pairs_disturbed'] else ' undisturbed'} round(s)"
        f" of {ab['pairs_run']} x {plan['ab_seconds']} s"
    )
    if ab["all_pairs_disturbed"]:
        lines.append("  EVERY ROUND WAS DISTURBED: repeat the run on a quieter machine")
    lines.append(f"  {'':22s}{'peer':>10s}{'intake':>10s}{'ratio':>8s}   target")
    lines.append(
        f"  {'req/s':22s}{peer['rps']:10.1f}{intake['rps']:10.1f}{ratio['rps']:8.2f}"
        f"   >= {TARGET_RPS_RATIO:.2f}  {_verdict(ok['intake_rps'])}"
    )
    lines.append(
        f"  {'latency p50 (ms)':22s}{peer['p50_ms']:10.1f}{intake['p50_ms']:10.1f}"
        f"{ratio['p50']:8.2f}"
    )
    lines.append(
        f"  {'latency p99 (ms)':22s}{peer['p99_ms']:10.1f}{intake['p99_ms']:10.1f}"
        f"{ratio['p99']:8.2f}"
        f"   <= {TARGET_P99_RATIO:.2f}  {_verdict(ok['intake_p99'])}"
    )
    if "cpu_ms_per_request" in peer:
        for key in ("web", "postgres", "redis", "wrk", "other"):
            lines.append(
                f"  {'CPU ms/req ' + key:22s}{peer['cpu_ms_per_request'][key]:10.2f}"
                f"{intake['cpu_ms_per_request'][key]:10.2f}"
            )
        for key, label in (("steal", "steal (cores)"), ("disk_busy", "disk busy (share)")):
            lines.append(
                f"  {label:22s}{peer['cpu_cores'].get(key, 0):10.2f}"
                f"{intake['cpu_cores'].get(key, 0):10.2f}"
            )
    lines.append(
        "  per-round req/s ratios: "
        + ", ".join(f"{r:.2f}" for r in ratio["rps_per_round"])
        + "; p99 ratios: "
        + ", ".join(f"{r:.2f}" for r in ratio["p99_per_round"])
    )
    lines.append(f"  non-202 answers: peer {peer['non_202']}, intake {intake['non_202']}")

    lines.append("")
    lines.append(
        f"End to end (202 -> applied), paced, {plan['items_per_event']} items per event"
        " (full topology: web, relay, 3 workers, beat, Flower)"
    )
    for key, label in (("e2e", "target rate"), ("e2e_low", "lower rate")):
        e2e = results[key]
        lag, sender = e2e["lag"], e2e["sender"]
        verdict = (
            f"   target p99 < {TARGET_E2E_P99_MS:.0f} ms at {plan['e2e_rate']:.0f}/s:"
            f" {_verdict(ok['e2e_p99'])}"
            if key == "e2e"
            else ""
        )
        lines.append(
            f"  {label} {e2e['rate']:.0f} events/s for {e2e['seconds']:.0f} s: sent"
            f" {sender['sent']}/{sender['planned']} at {sender['achieved_rate']:.1f} events/s"
            f" (statuses {sender['statuses']}, errors {sender['errors']},"
            f" fell behind schedule by up to {sender['max_behind_schedule_ms'] / 1000:.1f} s);"
            f" applied {lag['completed']}/{lag['events']}"
        )
        lines.append(
            f"    lag p50 {lag['p50_ms']:.0f} ms, p90 {lag['p90_ms']:.0f} ms,"
            f" p99 {lag['p99_ms']:.0f} ms, max {lag['max_ms']:.0f} ms{verdict}"
        )
        lines.append(
            f"    intake answer (client) p50 {sender['http_p50_ms']:.1f} ms,"
            f" p99 {sender['http_p99_ms']:.1f} ms; apply task p50"
            f" {e2e['task_runtime']['p50_ms']:.1f} ms, p99 {e2e['task_runtime']['p99_ms']:.1f} ms,"
            f" worker-high pool busy {e2e['task_runtime']['pool_busy']:.0%},"
            f" new PostgreSQL sessions per event {e2e['pg_sessions_per_event']:.2f};"
            f" cores: {_cores_brief(e2e['cpu_cores'])}"
        )

    idle = results["storefront_idle"]
    idle_p99 = idle_reference_p99(results)
    paced_low = results["storefront_paced_low"]["reads"]
    paced = results["storefront_paced_storm"]["reads"]
    storm = results["storefront_idle_vs_storm"]
    lines.append("")
    lines.append(
        f"Storefront GET /api/v1/products/<sku>: wrk {plan['read_connections']} connections,"
        f" {plan['read_pause_ms']} ms pause between a connection's requests,"
        f" {plan['read_seconds']} s per window"
    )
    lines.append(f"  {'':34s}{'req/s':>8s}{'p50 ms':>9s}{'p99 ms':>9s}{'p99/idle':>10s}   target")
    lines.append(
        f"  {'idle (first window)':34s}{idle['rps']:8.1f}{idle['p50_ms']:9.1f}{idle['p99_ms']:9.1f}"
        f"   (machine {_busy_cores(idle):.2f} cores busy)"
    )
    lines.append(f"  {'idle (median of all windows)':34s}{'':8s}{'':9s}{idle_p99:9.1f}")
    label = f"paced load {plan['e2e_low_rate']:.0f} events/s"
    lines.append(
        f"  {label:34s}{paced_low['rps']:8.1f}{paced_low['p50_ms']:9.1f}"
        f"{paced_low['p99_ms']:9.1f}{paced_low['p99_ms'] / idle_p99:10.2f}"
    )
    label = f"paced load {plan['e2e_rate']:.0f} events/s"
    lines.append(
        f"  {label:34s}{paced['rps']:8.1f}{paced['p50_ms']:9.1f}{paced['p99_ms']:9.1f}"
        f"{paced['p99_ms'] / idle_p99:10.2f}"
        f"   <= {TARGET_READ_P99_RATIO:.2f}  {_verdict(ok['storefront_paced'])}"
    )
    summary = storm["summary"]
    lines.append(
        f"  saturating storm ({plan['connections']} connections), idle and storm windows"
        f" alternating, median of {summary['rounds_used']}"
        f"{'' if summary['all_rounds_disturbed'] else ' undisturbed'} round(s)"
        f" of {summary['rounds_run']}:"
    )
    for round_ in storm["rounds"]:
        lines.append(
            f"    round {round_['round']}: idle p99 {round_['idle']['p99_ms']:.1f} ms"
            f" (machine {_busy_cores(round_['idle']):.2f} cores busy),"
            f" storm p99 {round_['reads']['p99_ms']:.1f} ms, ratio {round_['p99_ratio']:.2f}"
            f" ({round_['storm']['rps']:.0f} webhooks/s, storm p99"
            f" {round_['storm']['p99_ms']:.1f} ms){'  DISTURBED' if round_['disturbed'] else ''}"
            + ("" if round_["storm_drained"]["complete"] else "  BACKLOG NOT APPLIED IN TIME")
        )
    lines.append(
        f"    median: idle p99 {summary['idle_p99_ms']:.1f} ms, storm p99"
        f" {summary['storm_p99_ms']:.1f} ms, ratio {summary['p99_ratio']:.2f}"
        f"   <= {TARGET_READ_P99_RATIO:.2f}  {_verdict(ok['storefront_storm'])}"
    )
    disturbed = [
        label
        for label, row in (
            ("storefront idle", idle),
            ("storefront paced (lower rate)", paced_low),
            ("storefront paced", paced),
            ("e2e", results["e2e"]),
            ("e2e lower rate", results["e2e_low"]),
        )
        if _disturbance(row) > DISTURBED_CORES
    ]
    lines.append("")
    lines.append(
        "Disturbed (other processes or steal above"
        f" {DISTURBED_CORES} cores): " + (", ".join(disturbed) if disturbed else "none")
    )
    return "\n".join(lines)


def _cores_brief(cores: dict[str, float]) -> str:
    keys = (
        "web",
        "storefront",
        "worker_high",
        "other_platform",
        "postgres",
        "redis",
        "driver",
        "other",
    )
    return ", ".join(f"{key} {cores[key]:.2f}" for key in keys if key in cores) + (
        f"; steal {cores.get('steal', 0):.2f}"
    )


# -- main ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.webhooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 2 minutes")
    parser.add_argument("--rounds", type=int, help="intake/peer round pairs")
    parser.add_argument("--storm-rounds", type=int, help="storefront idle/storm round pairs")
    parser.add_argument("--seconds", type=int, help="length of one intake or peer wrk run")
    parser.add_argument("--e2e-seconds", type=int, help="length of each paced end-to-end run")
    parser.add_argument("--e2e-rate", type=float, help="events per second of the paced load")
    parser.add_argument("--e2e-low-rate", type=float, help="events/s of the second paced run")
    options = parser.parse_args(argv)
    plan = QUICK if options.quick else FULL
    overrides = {
        "rounds": options.rounds,
        "storm_rounds": options.storm_rounds,
        "ab_seconds": options.seconds,
        "e2e_seconds": options.e2e_seconds,
        "e2e_rate": options.e2e_rate,
        "e2e_low_rate": options.e2e_low_rate,
    }
    plan = replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    if not (1 <= plan.rounds <= 50 and 1 <= plan.storm_rounds <= 50):
        parser.error("rounds must be 1..50")
    if not 1 <= plan.ab_seconds <= 120:
        parser.error("seconds must be 1..120")
    if not 1 <= plan.e2e_seconds <= 300:
        parser.error("e2e seconds must be 1..300")
    if not (1 <= plan.e2e_rate <= 2000 and 1 <= plan.e2e_low_rate <= 2000):
        parser.error("paced rates must be 1..2000 events/s")
    return plan


def _terminate(signum: int, frame: object) -> None:
    # Turn SIGTERM into an exception, so the `finally` that removes everything runs.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    wrk_binary()  # before anything is created: stops with install instructions if missing
    signal.signal(signal.SIGTERM, _terminate)
    started = datetime.now(UTC)
    run_dir = Path(tempfile.mkdtemp(prefix="sp-bench-"))
    admin_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL)
    db = BenchDatabase(admin_url, f"syncplatform_bench_{os.getpid()}_{secrets.token_hex(3)}")
    redis = RedisServer()
    bench = Bench(plan, run_dir, redis)
    results: dict[str, Any] = {"plan": asdict(plan), "started_at": started.isoformat()}
    succeeded = False
    try:
        print(f"[{plan.name}] database {db.name}, private redis on port {redis.port}", flush=True)
        db.create()
        redis.start()
        bench.port = free_port()
        env = platform_env(db, redis, run_dir, bench.port)
        bench.storefront_port = int(env["STOREFRONT_PORT"])
        # Flower runs in the later phases: it needs a login.
        env["FLOWER_BASIC_AUTH"] = f"bench:{secrets.token_urlsafe(12)}"
        import django

        django.setup()
        print("  migrating, creating the connector and the catalog …", flush=True)
        manage("migrate", "--noinput", env=env)
        credentials = json.loads(manage("create_connector", CONNECTOR_SLUG, env=env))
        bench.skus = seed_catalog(plan.skus)
        bench.sku_file.write_text("\n".join(bench.skus) + "\n")
        bench.factory = EventFactory(
            secret=credentials["webhook_secret"], skus=bench.skus, items=plan.items_per_event
        )
        create_peer_table()

        from syncplatform.launcher import build_processes

        commands = build_processes(env)
        results["machine"] = machine_facts(db, redis, commands)
        # The peer's settings are the platform's plus one URL: see benchmarks/peer/.
        bench.start("web", commands["web"], {**env, "DJANGO_SETTINGS_MODULE": PEER_SETTINGS})
        bench.processes["web"].wait_http(f"{bench.base_url}/healthz")

        print("intake vs peer (web only; nothing consumes the queue yet)", flush=True)
        results["intake_vs_peer"] = phase_intake_vs_peer(bench)
        results["left_unapplied_after_intake_runs"] = settle_backlog(redis)

        print(
            "starting the storefront pool, relay, workers, beat and Flower (the launcher's"
            " commands)",
            flush=True,
        )
        for name in (
            "storefront",
            "relay",
            "worker-high",
            "worker-default",
            "worker-low",
            "beat",
            "flower",
        ):
            bench.start(name, commands[name], env)
        bench.processes["storefront"].wait_http(f"http://127.0.0.1:{bench.storefront_port}/healthz")
        bench.processes["relay"].wait_log("outbox relay started")
        for name in ("worker-high", "worker-default", "worker-low"):
            bench.processes[name].wait_log("ready.")
        bench.processes["beat"].wait_log("beat: Starting")
        bench.processes["flower"].wait_log("Visit me at")
        time.sleep(2)  # let the start-up work (beat's first tick, Flower's inspect) pass

        print("storefront idle, then end to end, then storefront under load", flush=True)
        results["storefront_idle"] = phase_reads(bench, "idle")
        results["e2e"] = phase_e2e(
            bench, id_prefix="e2e", rate=plan.e2e_rate, seconds=plan.e2e_seconds
        )
        results["e2e_low"] = phase_e2e(
            bench, id_prefix="e2e-low", rate=plan.e2e_low_rate, seconds=plan.e2e_seconds
        )
        results["storefront_paced_low"] = phase_reads_during_paced_load(
            bench, rate=plan.e2e_low_rate, id_prefix="reads-paced-low"
        )
        results["storefront_paced_storm"] = phase_reads_during_paced_load(
            bench, rate=plan.e2e_rate, id_prefix="reads-paced"
        )
        print("storefront idle and in a saturating storm, alternating", flush=True)
        results["storefront_idle_vs_storm"] = phase_storefront_idle_vs_storm(bench)
        results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        succeeded = True
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        bench.stop_all()
        tear_down(db, redis, run_dir, succeeded=succeeded)
    results["finished_at"] = datetime.now(UTC).isoformat()
    results["verdicts"] = verdicts(results)

    text = report(results)
    print("\n" + text)
    write_results("webhooks", plan.name, started, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
