"""Intake and peer rounds with the spread of wrk's connections over the web's workers.

Sets up what benchmarks/webhooks.py sets up for its first phase, then runs ROUNDS pairs of
10 s wrk replays (peer, then intake) and prints, per round: the target, the connections
per gunicorn worker (sampled 2 s in), req/s, p50 and p99 in ms, CPU ms per request in
gunicorn and PostgreSQL, and the cores busy on the machine. REUSEPORT=1 appends
--reuse-port to the web command (the runs were at 2a8d9d1; since f031925 the launcher
adds it itself); NOTRIGGER=1 drops the outbox table's NOTIFY trigger.

Run from a clone's root: `python benchmarks/results/reuse-port-20261124/intake_rounds.py`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, os.getcwd())
from benchmarks import webhooks as bench_module


def main() -> None:
    w = bench_module
    plan = w.parse_args(["--quick"])
    run_dir = Path(tempfile.mkdtemp(prefix="sp-rounds-"))
    db = w.BenchDatabase(w.DEFAULT_ADMIN_URL, f"syncplatform_bench_{os.getpid()}_rounds")
    redis = w.RedisServer()
    bench = w.Bench(plan, run_dir, redis)
    try:
        db.create()
        redis.start()
        bench.port = w.free_port()
        env = w.platform_env(db, redis, run_dir, bench.port)
        import django

        django.setup()
        w.manage("migrate", "--noinput", env=env)
        credentials = json.loads(w.manage("create_connector", w.CONNECTOR_SLUG, env=env))
        bench.skus = w.seed_catalog(plan.skus)
        bench.factory = w.EventFactory(
            secret=credentials["webhook_secret"], skus=bench.skus, items=plan.items_per_event
        )
        w.create_peer_table()
        from syncplatform.launcher import build_processes

        commands = build_processes(env)
        if os.environ.get("REUSEPORT"):
            commands["web"] += " --reuse-port"
        if os.environ.get("NOTRIGGER"):
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("DROP TRIGGER outbox_message_notify ON outbox_outboxmessage")
        bench.start("web", commands["web"], {**env, "DJANGO_SETTINGS_MODULE": w.PEER_SETTINGS})
        bench.processes["web"].wait_http(f"{bench.base_url}/healthz")
        targets = {"peer": w.PEER_PATH, "intake": bench.intake_path}
        for name, path in targets.items():
            bench.replay(path, 3, f"warm-{name}")
        for round_number in range(int(os.environ.get("ROUNDS", "1"))):
            for name, path in targets.items():
                args = bench.replay_args(path, 10, f"r{round_number}-{name}")
                spread: list[list[int]] = []
                sampler = threading.Timer(
                    2.0,
                    lambda spread=spread: spread.append(
                        w.connections_per_worker(bench, "web", bench.port)
                    ),
                )
                before = bench.meter.read()
                sampler.start()
                result = w.wrk_run(**args)
                sampler.join()
                row = w._wrk_row(result, bench.meter.used(before, bench.meter.read()))
                per_request, cores = row["cpu_ms_per_request"], row["cpu_cores"]
                print(
                    name,
                    spread,
                    round(result.rps, 1),
                    result.p50_ms,
                    result.p99_ms,
                    "web",
                    per_request["web"],
                    "pg",
                    per_request["postgres"],
                    "busy",
                    cores["machine_busy"],
                    flush=True,
                )
    finally:
        bench.stop_all()
        redis.stop()
        db.drop()


if __name__ == "__main__":
    main()
