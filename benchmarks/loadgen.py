"""Load generators: wrk (closed loop, C + LuaJIT) and a paced Python sender (open loop).

wrk drives the throughput and read-latency runs: its event loop costs a small fraction of
what a Django request does, so it does not become the bottleneck on two cores. The paced
sender keeps a steady rate for the end-to-end runs, where wrk would send as fast as it can.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .payloads import SignedRequest

LUA_DIR = Path(__file__).resolve().parent / "lua"
# A request slower than this is a wrk timeout and leaves the latency histogram: keep it long.
WRK_TIMEOUT = "10s"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (the value below which pct % of the samples lie)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


WRK_MISSING = """\
wrk, the HTTP load generator these benchmarks drive, is not installed (not on PATH).
Install it, then run the benchmark again:
    Debian / Ubuntu:  sudo apt-get install -y wrk
    macOS (Homebrew): brew install wrk
    from source:      https://github.com/wg/wrk (make; put the wrk binary on PATH)
Any wrk 4.x works: the benchmark runs it with LuaJIT scripts from benchmarks/lua/."""


def wrk_binary() -> str:
    """Return wrk's path, or stop with instructions to install it."""
    found = shutil.which("wrk")
    if not found:
        raise SystemExit(WRK_MISSING)
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    exhausted: int

    @classmethod
    def parse(cls, output: str) -> WrkResult:
        line = next((line for line in output.splitlines() if line.startswith("WRK_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result:\n{output[-2000:]}")
        data = json.loads(line.removeprefix("WRK_JSON "))
        latency = data["latency_us"]
        seconds = data["duration_us"] / 1e6
        return cls(
            requests=data["requests"],
            seconds=seconds,
            rps=data["requests"] / seconds if seconds else 0.0,
            p50_ms=latency["p50"] / 1000,
            p90_ms=latency["p90"] / 1000,
            p99_ms=latency["p99"] / 1000,
            p999_ms=latency["p999"] / 1000,
            max_ms=latency["max"] / 1000,
            mean_ms=latency["mean"] / 1000,
            statuses=data["statuses"],
            socket_errors=data["errors"],
            exhausted=data["exhausted"],
        )

    def ok(self, status: int) -> int:
        return self.statuses.get(str(status), 0)


def wrk_command(
    *, url: str, script: str, args: Sequence[str], connections: int, threads: int, seconds: float
) -> list[str]:
    return [
        wrk_binary(),
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(LUA_DIR / script),
        url,
        "--",
        *args,
    ]


def wrk_run(
    *, url: str, script: str, args: Sequence[str], connections: int, threads: int, seconds: float
) -> WrkResult:
    command = wrk_command(
        url=url,
        script=script,
        args=args,
        connections=connections,
        threads=threads,
        seconds=seconds,
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return WrkResult.parse(result.stdout)


class WrkInBackground:
    """wrk running beside another measurement (the saturating storm)."""

    def __init__(self, **kwargs: object) -> None:
        self.seconds = float(kwargs["seconds"])  # type: ignore[arg-type]
        self.process = subprocess.Popen(
            wrk_command(**kwargs),  # type: ignore[arg-type]
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def result(self) -> WrkResult:
        try:
            stdout, stderr = self.process.communicate(timeout=self.seconds + 120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        if self.process.returncode != 0:
            raise RuntimeError(f"wrk failed ({self.process.returncode}):\n{stderr[-2000:]}")
        return WrkResult.parse(stdout)


# -- the paced sender -----------------------------------------------------------------------
@dataclass
class PacedResult:
    planned: int
    rate: float
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first_send: float = math.inf
    last_send: float = 0.0
    max_behind_ms: float = 0.0
    gave_up: int = 0

    @property
    def achieved_rate(self) -> float:
        span = self.last_send - self.first_send
        return (self.sent - 1) / span if self.sent > 1 and span > 0 else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "planned": self.planned,
            "target_rate": self.rate,
            "sent": self.sent,
            "achieved_rate": round(self.achieved_rate, 1),
            "statuses": dict(self.statuses),
            "errors": self.errors,
            "not_sent_deadline": self.gave_up,
            "max_behind_schedule_ms": round(self.max_behind_ms, 1),
            "http_p50_ms": round(percentile(self.latencies_ms, 50), 2),
            "http_p99_ms": round(percentile(self.latencies_ms, 99), 2),
            "http_max_ms": round(max(self.latencies_ms, default=math.nan), 2),
        }


def send_paced(
    requests: Sequence[SignedRequest],
    *,
    host: str,
    port: int,
    rate: float,
    threads: int = 64,
    grace_seconds: float = 30.0,
) -> PacedResult:
    """POST request i at start + i/rate (open loop), over keep-alive connections.

    Threads take the next request in order and sleep until its time, so a slow answer delays
    only its own thread. Bounded: nothing is sent after the schedule's end + grace_seconds.
    """
    result = PacedResult(planned=len(requests), rate=rate)
    lock = threading.Lock()
    order = itertools.count()
    start = time.monotonic() + 0.2
    deadline = start + len(requests) / rate + grace_seconds

    def sender() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            while True:
                index = next(order)
                if index >= len(requests):
                    return
                due = start + index / rate
                now = time.monotonic()
                if now >= deadline:
                    with lock:
                        result.gave_up += 1
                    continue
                if due > now:
                    time.sleep(due - now)
                request = requests[index]
                sent_at = time.monotonic()
                try:
                    connection.request(
                        "POST",
                        request.path,
                        body=request.body,
                        headers={"Content-Type": "application/json", **request.headers},
                    )
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    connection.close()
                    connection = http.client.HTTPConnection(host, port, timeout=30)
                    status = None
                answered_at = time.monotonic()
                with lock:
                    result.sent += 1
                    result.first_send = min(result.first_send, sent_at)
                    result.last_send = max(result.last_send, sent_at)
                    result.max_behind_ms = max(result.max_behind_ms, (sent_at - due) * 1000)
                    if status is None:
                        result.errors += 1
                    else:
                        result.statuses[status] += 1
                        result.latencies_ms.append((answered_at - sent_at) * 1000)
        finally:
            connection.close()

    workers = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=max(1.0, deadline + 60 - time.monotonic()))
    return result
