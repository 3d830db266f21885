"""`make run` as a newcomer runs it: embedded SQLite and Redis, all eight processes, Ctrl-C.

Everything goes over real HTTP and real process signals; the run uses a private state
directory and free ports, so it never touches another running copy.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.support.redis_server import free_port
from tests.support.waiting import wait_until

BASE_DIR = Path(__file__).resolve().parents[2]
QUEUES = ("high", "default", "low")


def http_status(url: str, **kwargs) -> int | None:
    try:
        return requests.get(url, timeout=10, **kwargs).status_code
    except requests.RequestException:  # not listening yet, or still loading the app
        return None


def processes_of(run_dir: str) -> list[psutil.Process]:
    """Every process started for this run (they all carry its state directory)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid != os.getpid() and proc.environ().get("SYNCPLATFORM_RUN_DIR") == run_dir:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def gunicorn_workers(run_dir: str, port: str) -> list[psutil.Process]:
    """The worker processes of the gunicorn pool serving `port` (its master left out)."""
    commands = {proc: " ".join(proc.cmdline()) for proc in processes_of(run_dir)}
    pool = [
        proc
        for proc, command in commands.items()
        if "syncplatform.wsgi" in command and f":{port}" in command
    ]
    pids = {proc.pid for proc in pool}
    return [proc for proc in pool if proc.ppid() in pids]


def connections_per_worker(workers: list[psutil.Process], port: str) -> list[int]:
    return [
        sum(
            1
            for conn in worker.net_connections(kind="tcp")
            if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == int(port)
        )
        for worker in workers
    ]


def busy_clients_spread(port: str, workers: list[psutil.Process], count: int = 32) -> list[int]:
    """Open `count` keep-alive connections at once and keep each busy for a second, as an
    ERP's connection pool or a proxy does under load; return how many each worker holds.

    One event loop drives them all, sending the next request on a connection as soon as
    the last answer is in: the pattern in which one worker used to take them all.
    """
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytes] = {}
    for _ in range(count):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", int(port)))
        selector.register(client, selectors.EVENT_WRITE)
        received[client] = b""
    deadline = time.monotonic() + 1.0
    try:
        while time.monotonic() < deadline:
            for key, events in selector.select(timeout=0.1):
                client = key.fileobj
                if events & selectors.EVENT_WRITE:  # connected: first request
                    client.sendall(request)
                    selector.modify(client, selectors.EVENT_READ)
                    continue
                received[client] += client.recv(65536)
                head, _, body = received[client].partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    received[client] = b""
                    client.sendall(request)
        return connections_per_worker(workers, port)
    finally:
        for client in received:
            selector.unregister(client)
            client.close()


@pytest.fixture
def platform_env_only() -> tuple[dict[str, str], str]:
    """The environment of a newcomer's `make run`: a private state directory, free ports."""
    run_dir = tempfile.mkdtemp(prefix="sp-smoke-")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        SYNCPLATFORM_RUN_DIR=run_dir,
        WEB_PORT=str(free_port()),
        FLOWER_PORT=str(free_port()),
        STOREFRONT_PORT=str(free_port()),
        REDIS_PORT=str(free_port()),
        DJANGO_SUPERUSER_PASSWORD="smoke-test-password",
    )
    return env, run_dir


@pytest.fixture
def platform(platform_env_only):
    env, run_dir = platform_env_only
    log_path = Path(run_dir) / "run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield process, env, log_path
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    for proc in processes_of(run_dir):
        proc.kill()


def test_make_run_brings_up_the_whole_platform_and_stops_cleanly(platform):
    process, env, log_path = platform
    web = f"http://127.0.0.1:{env['WEB_PORT']}"
    flower = f"http://127.0.0.1:{env['FLOWER_PORT']}"
    redis_url = f"redis://127.0.0.1:{env['REDIS_PORT']}/0"
    cli_env = {**env, "REDIS_URL": redis_url}

    # The web process answers ready: database and broker reachable
    wait_until(
        lambda: http_status(f"{web}/readyz") == 200 or process.poll() is not None,
        timeout=180,
        interval=0.5,
        what="readyz",
    )
    assert process.poll() is None, log_path.read_text()
    log = log_path.read_text()
    assert f"{web}/admin/" in log
    assert "admin / smoke-test-password" in log

    # Shoppers' reads have a pool of their own
    storefront = f"http://127.0.0.1:{env['STOREFRONT_PORT']}"
    wait_until(lambda: http_status(f"{storefront}/healthz") == 200, timeout=60, what="storefront")
    assert http_status(f"{storefront}/api/v1/products") == 200

    # The admin's login page and its static files are served
    assert http_status(f"{web}/admin/login/") == 200
    assert http_status(f"{web}/static/admin/css/base.css") == 200

    # Flower is behind basic auth
    user, password = (
        (Path(env["SYNCPLATFORM_RUN_DIR"]) / "flower_basic_auth").read_text().split(":", 1)
    )
    wait_until(lambda: http_status(flower) is not None, timeout=60, what="flower")
    assert http_status(flower) == 401
    assert http_status(flower, auth=(user, password)) == 200

    # A probe through each queue, via the outbox, is answered by that queue's own worker
    result = subprocess.run(
        [sys.executable, "manage.py", "ping_queues", "--timeout", "90"],
        cwd=BASE_DIR,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stderr + log_path.read_text()[-3000:]
    answers = {row["queue"]: row["answer"] for row in map(json.loads, result.stdout.splitlines())}
    assert set(answers) == set(QUEUES)
    for queue in QUEUES:
        assert answers[queue]["queue"] == queue
        assert answers[queue]["hostname"].startswith(f"{queue}@")

    # Each worker consumes exactly one queue, its own
    inspect = subprocess.run(
        [
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "syncplatform",
            "inspect",
            "active_queues",
            "--json",
            "--timeout",
            "10",
        ],
        cwd=BASE_DIR,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    consumed = {
        worker: [q["name"] for q in queues]
        for worker, queues in json.loads(inspect.stdout.strip().splitlines()[-1]).items()
    }
    assert sorted(consumed.values()) == sorted([[q] for q in QUEUES])
    assert all(worker.startswith(f"{queues[0]}@") for worker, queues in consumed.items())

    # Busy clients' keep-alive connections are spread over the web's workers: none idles
    # while the other serves them all (with one shared socket, 32:0 and 31:1 were common)
    workers = gunicorn_workers(env["SYNCPLATFORM_RUN_DIR"], env["WEB_PORT"])
    assert len(workers) == 2
    for _ in range(3):
        spread = busy_clients_spread(env["WEB_PORT"], workers)
        assert sum(spread) == 32
        assert min(spread) >= 5, spread

    # Ctrl-C stops everything and leaves no process behind
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)
    wait_until(lambda: not processes_of(env["SYNCPLATFORM_RUN_DIR"]), timeout=30, what="no orphans")


def test_make_run_stops_at_once_when_a_port_is_taken(platform_env_only):
    env, run_dir = platform_env_only
    # Given something already listening on the web's port (say, a platform started earlier)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["WEB_PORT"])))
        taken.listen()
        # When a newcomer runs `make run`
        result = subprocess.run(
            ["make", "--no-print-directory", "run"],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    # Then it stops before starting anything, and says which port and what to do
    assert result.returncode != 0
    assert f"Port already in use: WEB_PORT {env['WEB_PORT']}" in result.stderr
    assert "make run" in result.stderr
    assert "Preparing the database" not in result.stdout
    assert not processes_of(run_dir)
