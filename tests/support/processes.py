"""Real platform processes for integration tests: Celery workers and the outbox relay.

Each runs as its own OS process on the test database and the test broker, logs to a file the
test can read, and is stopped (or killed, for fault tests) by the fixture that made it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import requests
from django.conf import settings
from django.db import connection

from tests.support.waiting import wait_until

BASE_DIR = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def test_database_url() -> str:
    """The URL of the database the test run created, for processes outside this one."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def process_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": test_database_url(),
            "DJANGO_SETTINGS_MODULE": "syncplatform.settings",
            "PYTHONUNBUFFERED": "1",
            # Workers import the test-only tasks from tests/support.
            "PYTHONPATH": str(BASE_DIR),
        }
    )
    env.update(overrides)
    return env


class PlatformProcess:
    """A child process in its own session, so a kill reaches its whole process group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = Path(tempfile.mkstemp(prefix=f"sp-{name}-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    def start(self) -> PlatformProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful), then SIGKILL the group if it has not gone by the deadline."""
        if not self.alive():
            return
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reap_group()

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reap_group()

    def _reap_group(self) -> None:
        # Pool children can outlive a killed parent for a moment; leave none behind.
        assert self.process is not None
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) == self.process.pid:
                    proc.kill()
            except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
                continue


class Worker(PlatformProcess):
    """A Celery worker consuming `queues`, with the test-only tasks loaded too."""

    def __init__(self, queues: str, env: dict[str, str], concurrency: int = 1) -> None:
        self.hostname = f"{queues.replace(',', '-')}-{os.getpid()}@test"
        super().__init__(
            f"worker-{queues}",
            [
                CELERY,
                "-A",
                "syncplatform",
                "worker",
                "-Q",
                queues,
                "-n",
                self.hostname,
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--include",
                "tests.support.tasks",
            ],
            env,
        )

    def start(self) -> Worker:
        super().start()
        wait_until(
            lambda: "ready." in self.log() or not self.alive(),
            timeout=60,
            what=f"{self.hostname} ready",
        )
        assert self.alive(), self.log()
        return self

    def pool_children(self) -> list[psutil.Process]:
        return psutil.Process(self.pid).children()


class Beat(PlatformProcess):
    """`celery beat` with the platform's scheduler (or `scheduler`), as the launcher runs it."""

    def __init__(self, env: dict[str, str], scheduler: str = "", name: str = "beat") -> None:
        super().__init__(
            name,
            [
                CELERY,
                "-A",
                "syncplatform",
                "beat",
                "--loglevel",
                "INFO",
                "--pidfile=",
                "--scheduler",
                scheduler or settings.CELERY_BEAT_SCHEDULER,
            ],
            env,
        )

    def start(self) -> Beat:
        super().start()
        wait_until(
            lambda: "beat: Starting..." in self.log() or not self.alive(),
            timeout=60,
            what=f"{self.name} started",
        )
        assert self.alive(), self.log()
        return self

    def sent(self, name: str) -> int:
        """How many times this process has sent the periodic task called `name`."""
        return self.log().count(f"Sending due task {name} (")


class Relay(PlatformProcess):
    def __init__(self, env: dict[str, str], *extra: str) -> None:
        super().__init__("relay", [sys.executable, "manage.py", "run_outbox_relay", *extra], env)


class Web(PlatformProcess):
    """gunicorn serving the platform on a free port, as the launcher runs it."""

    def __init__(self, env: dict[str, str], port: int, workers: int = 2) -> None:
        self.url = f"http://127.0.0.1:{port}"
        super().__init__(
            "web",
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "syncplatform.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                "4",
            ],
            env,
        )

    def start(self) -> Web:
        super().start()
        wait_until(
            lambda: _answers(f"{self.url}/healthz") or not self.alive(),
            timeout=60,
            what="web /healthz",
        )
        assert self.alive(), self.log()
        return self


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code == 200
    except requests.RequestException:  # not listening yet, or still loading the app
        return False
