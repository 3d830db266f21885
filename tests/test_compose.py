"""docker-compose.yml and the Dockerfile run the project's real entry points, the way
`make run` does (syncplatform/launcher.py), so the two cannot drift apart.

No Docker is needed: the compose file is read with PyYAML and its `${…}` variables are
substituted here the way Compose does it.
"""

from __future__ import annotations

import json
import re
import runpy
import shlex
import urllib.request
from pathlib import Path
from typing import Any

import dj_database_url
import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app
from celery.beat import Scheduler
from django.conf import settings as django_settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import get_commands
from django.test import Client
from django_celery_beat.schedulers import DatabaseScheduler
from gunicorn.util import import_app
from kombu.utils.imports import symbol_by_name

from syncplatform import launcher, wsgi
from syncplatform.celery import app as project_celery_app

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
SETTINGS_FILE = ROOT / "syncplatform" / "settings.py"
LAUNCHER_FILE = ROOT / "syncplatform" / "launcher.py"
METRICS_FILE = ROOT / "syncplatform" / "metrics.py"

LONG_RUNNING = {
    "web",
    "storefront",
    "relay",
    "worker-high",
    "worker-default",
    "worker-low",
    "beat",
    "flower",
}
ONE_SHOT = {"migrate"}
INFRASTRUCTURE = {"postgres", "redis"}
WORKER_OF_QUEUE = {"high": "worker-high", "default": "worker-default", "low": "worker-low"}

# What an operator must set; everything else has a default.
REQUIRED_VARIABLES = {
    "SECRET_KEY": "compose-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "ALLOWED_HOSTS": "shop.example.com,www.shop.example.com",
    "POSTGRES_PASSWORD": "compose-test-password",
    "FLOWER_BASIC_AUTH": "ops:compose-test",
}
LAUNCHER_ENV = {"WEB_PORT": "8000", "FLOWER_PORT": "5555", "STOREFRONT_PORT": "8001"}
CONCURRENCY_OVERRIDES = {
    "WEB_CONCURRENCY": "5",
    "WEB_THREADS": "3",
    "STOREFRONT_CONCURRENCY": "3",
    "WORKER_HIGH_CONCURRENCY": "8",
    "WORKER_DEFAULT_CONCURRENCY": "3",
    "WORKER_LOW_CONCURRENCY": "4",
}

# The only ways a container's command may differ from the launcher's: listen on every
# interface instead of loopback, and keep gunicorn's heartbeat files in memory.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - inside a container, reached through published ports
CONTAINER_OPTIONS = {
    "web": {"--bind": f"{ALL_INTERFACES}:8000"},
    "storefront": {"--bind": f"{ALL_INTERFACES}:8001"},
    "flower": {"--address": ALL_INTERFACES},
}
CONTAINER_EXTRA_ARGS = {
    "web": ["--worker-tmp-dir", "/dev/shm"],
    "storefront": ["--worker-tmp-dir", "/dev/shm"],
}

DATABASE_AND_BROKER = {
    "postgres": "service_healthy",
    "redis": "service_healthy",
    "migrate": "service_completed_successfully",
}
EXPECTED_DEPENDS_ON = {
    "migrate": {"postgres": "service_healthy"},
    "web": DATABASE_AND_BROKER,
    "storefront": DATABASE_AND_BROKER,
    "relay": DATABASE_AND_BROKER,
    "worker-high": DATABASE_AND_BROKER,
    "worker-default": DATABASE_AND_BROKER,
    "worker-low": DATABASE_AND_BROKER,
    "beat": DATABASE_AND_BROKER,
    # Flower talks to the broker only.
    "flower": {"redis": "service_healthy"},
}


# --- Compose variable substitution ------------------------------------------------------


class MissingVariable(LookupError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}$]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


def interpolate_string(text: str, env: dict[str, str]) -> str:
    """Substitute `$$`, `$VAR`, `${VAR}`, `${VAR:-x}`, `${VAR-x}`, `${VAR:?x}`, `${VAR:+x}`."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None:
            raise ValueError(f"invalid interpolation in {text!r}")
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"]
        if op is None:
            if name not in env:
                # Compose would substitute "" with a warning: here that is a typo.
                raise MissingVariable(name, "used without a default")
            return env[name]
        value = env.get(name)
        present = bool(value) if op.startswith(":") else name in env
        kind = op[-1]
        if kind == "-":
            return value if present else arg
        if kind == "?":
            if not present:
                raise MissingVariable(name, arg)
            return value
        return arg if present else ""

    return _VARIABLE.sub(substitute, text)


def interpolate(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    return node


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(raw_compose(), REQUIRED_VARIABLES if env is None else env)


def services(env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    return compose(env)["services"]


def project_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services().items() if "build" in svc}


# --- Commands -----------------------------------------------------------------------------


def launcher_argv(command: str) -> list[str]:
    """The launcher's shell command as the argv a container runs: no `exec`, no paths."""
    argv = shlex.split(command)
    if argv[0] == "exec":
        argv = argv[1:]
    # The launcher lowers the priority of everything but the storefront on its one host;
    # containers get their CPU weight from Compose instead (cpu_shares).
    if argv[0] == "nice":
        argv = argv[3:]
    program = Path(argv[0]).name
    if re.fullmatch(r"python(3(\.\d+)?)?", program):
        program = "python"
    return [program, *argv[1:]]


def set_option(argv: list[str], option: str, value: str) -> list[str]:
    """Replace the value of `option` (as `--opt value` or `--opt=value`); it must be there."""
    for index, arg in enumerate(argv):
        if arg == option:
            return [*argv[: index + 1], value, *argv[index + 2 :]]
        if arg.startswith(option + "="):
            return [*argv[:index], f"{option}={value}", *argv[index + 1 :]]
    raise AssertionError(f"{option} not in {argv}")


def option_value(argv: list[str], option: str) -> str:
    for index, arg in enumerate(argv):
        if arg == option:
            return argv[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{option} not in {argv}")


def expected_container_argv(name: str, launcher_command: str) -> list[str]:
    argv = launcher_argv(launcher_command)
    for option, value in CONTAINER_OPTIONS.get(name, {}).items():
        argv = set_option(argv, option, value)
    return argv + CONTAINER_EXTRA_ARGS.get(name, [])


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), "use the list form: no shell between Docker and the process"
    assert all(isinstance(arg, str) for arg in command), command
    return command


def celery_services() -> dict[str, list[str]]:
    return {
        name: command_of(svc)
        for name, svc in project_services().items()
        if command_of(svc)[0] == "celery"
    }


def worker_services() -> dict[str, list[str]]:
    return {name: argv for name, argv in celery_services().items() if argv[3] == "worker"}


# --- Environment variables the code reads ----------------------------------------------

_READS = re.compile(
    r"(?:environ\.get|environ\.setdefault|env\.get|env\.setdefault|env_bool|env_int|env_float"
    r"|env_list)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']"
    r"|env\[[\"']([A-Z][A-Z0-9_]*)[\"']\]"
)


def variables_in(path: Path) -> set[str]:
    return {a or b for a, b in _READS.findall(path.read_text())}


def dockerfile_env() -> dict[str, str]:
    """The ENV instructions of the Dockerfile, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in shlex.split(line[4:]))
    return env


def container_env(service: str, host_env: dict[str, str]) -> dict[str, str]:
    """What a container sees: the image's ENV, then the service's `environment`."""
    declared = services(host_env)[service]["environment"]
    return {**dockerfile_env(), **{key: str(value) for key, value in declared.items()}}


def settings_under(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict[str, Any]:
    """Execute settings.py with exactly these variables (of those it reads) set.

    Directories it would create are not created (they are container paths) but returned,
    as the set under the key "created directories".
    """
    for name in variables_in(SETTINGS_FILE) | variables_in(LAUNCHER_FILE):
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    created: set[Path] = set()
    with monkeypatch.context() as patch:
        patch.setattr(Path, "mkdir", lambda path, *args, **kwargs: created.add(path))
        namespace = runpy.run_path(str(SETTINGS_FILE))
    loaded = {key: value for key, value in namespace.items() if key.isupper()}
    return {**loaded, "created directories": created}


# --- The tests ------------------------------------------------------------------------------


def test_only_the_documented_variables_are_required() -> None:
    env: dict[str, str] = {}
    missing: list[str] = []
    while True:
        try:
            compose(env)
        except MissingVariable as exc:
            missing.append(exc.name)
            env[exc.name] = REQUIRED_VARIABLES[exc.name]
            continue
        break
    assert sorted(missing) == sorted(REQUIRED_VARIABLES)


def test_the_services_are_the_launchers_processes() -> None:
    everything = services()
    assert set(everything) == LONG_RUNNING | ONE_SHOT | INFRASTRUCTURE
    assert set(project_services()) == LONG_RUNNING | ONE_SHOT
    long_running = {name for name, svc in project_services().items() if svc["restart"] != "no"}
    assert long_running == LONG_RUNNING
    assert set(launcher.build_processes(dict(LAUNCHER_ENV))) == LONG_RUNNING
    assert everything["migrate"]["restart"] == "no"
    assert command_of(everything["migrate"]) == ["python", "manage.py", "migrate", "--noinput"]


@pytest.mark.parametrize("overrides", [{}, CONCURRENCY_OVERRIDES], ids=["defaults", "overridden"])
def test_commands_match_the_launcher_flag_for_flag(overrides: dict[str, str]) -> None:
    processes = launcher.build_processes({**LAUNCHER_ENV, **overrides})
    running = services({**REQUIRED_VARIABLES, **overrides})
    for name, command in processes.items():
        assert command_of(running[name]) == expected_container_argv(name, command), name


def test_concurrency_comes_from_the_documented_variables() -> None:
    running = services({**REQUIRED_VARIABLES, **CONCURRENCY_OVERRIDES})
    assert option_value(command_of(running["web"]), "--workers") == "5"
    assert option_value(command_of(running["storefront"]), "--workers") == "3"
    assert option_value(command_of(running["worker-high"]), "--concurrency") == "8"
    assert option_value(command_of(running["worker-default"]), "--concurrency") == "3"
    assert option_value(command_of(running["worker-low"]), "--concurrency") == "4"
    defaults = services()
    assert option_value(command_of(defaults["worker-low"]), "--concurrency") == "2"
    assert option_value(command_of(defaults["worker-high"]), "--prefetch-multiplier") == "4"


def test_manage_py_commands_exist() -> None:
    commands = get_commands()
    used = {
        name: command_of(svc)[2]
        for name, svc in project_services().items()
        if command_of(svc)[:2] == ["python", "manage.py"]
    }
    assert used == {"migrate": "migrate", "relay": "run_outbox_relay"}
    for name, command in used.items():
        assert command in commands, f"{name}: manage.py {command} does not exist"


def test_each_queue_has_exactly_one_worker_service() -> None:
    workers = worker_services()
    queues = {name: option_value(argv, "-Q") for name, argv in workers.items()}
    assert set(queues.values()) <= set(django_settings.QUEUE_NAMES)
    assert sorted(queues.values()) == sorted(django_settings.QUEUE_NAMES)
    assert {queue: name for name, queue in queues.items()} == WORKER_OF_QUEUE
    for name, argv in workers.items():
        assert option_value(argv, "-n") == f"{queues[name]}@%h", name


def test_celery_app_path_is_the_projects_celery_app() -> None:
    paths = {option_value(argv, "-A") for argv in celery_services().values()}
    assert paths == {"syncplatform"}
    app = find_app("syncplatform")
    assert isinstance(app, Celery)
    assert app is project_celery_app
    assert {q.name for q in app.conf.task_queues} == set(django_settings.QUEUE_NAMES)
    assert set(celery_services()) == {*WORKER_OF_QUEUE.values(), "beat", "flower"}


def test_gunicorn_serves_the_projects_wsgi_application() -> None:
    argv = command_of(services()["web"])
    assert argv[0] == "gunicorn"
    module = argv[1]
    assert f"{module}.application" == django_settings.WSGI_APPLICATION
    application = import_app(module)
    # The project's own application: Django's handlers behind a dispatch by path
    assert application is wsgi.application
    assert isinstance(wsgi.MachineHandler(), WSGIHandler)


def test_beat_uses_the_database_scheduler() -> None:
    path = option_value(command_of(services()["beat"]), "--scheduler")
    assert path == django_settings.CELERY_BEAT_SCHEDULER
    scheduler = symbol_by_name(path)
    assert issubclass(scheduler, Scheduler)
    # The schedule stays in the database, editable in the admin (CONTRACT §5).
    assert issubclass(scheduler, DatabaseScheduler)


def test_every_project_service_runs_the_same_image() -> None:
    built = project_services()
    images = {json.dumps([svc["image"], svc["build"]], sort_keys=True) for svc in built.values()}
    assert len(images) == 1, images
    some = next(iter(built.values()))
    assert some["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert (ROOT / some["build"]["context"] / some["build"]["dockerfile"]) == DOCKERFILE
    assert some["image"] == "syncplatform:latest"
    tagged = services({**REQUIRED_VARIABLES, "SYNCPLATFORM_IMAGE": "registry.example/sp:1.2"})
    assert {svc["image"] for name, svc in tagged.items() if "build" in svc} == {
        "registry.example/sp:1.2"
    }


def test_dependencies_wait_for_healthy_database_and_broker() -> None:
    running = services()
    for name, expected in EXPECTED_DEPENDS_ON.items():
        depends_on = running[name]["depends_on"]
        assert isinstance(depends_on, dict), f"{name}: use the long form with conditions"
        conditions = {dep: spec["condition"] for dep, spec in depends_on.items()}
        assert conditions == expected, name
    for name, svc in running.items():
        for dep, spec in svc.get("depends_on", {}).items():
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in running[dep], f"{name} waits for {dep}'s health check"


def test_postgres_and_redis_are_healthchecked_and_persistent() -> None:
    document = compose()
    postgres, redis = document["services"]["postgres"], document["services"]["redis"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert redis["image"] == "redis:7"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "--appendonly" in redis["command"]
    mounts = {
        "postgres": ("postgres-data", "/var/lib/postgresql/data"),
        "redis": ("redis-data", "/data"),
    }
    for name, (volume, target) in mounts.items():
        assert f"{volume}:{target}" in document["services"][name]["volumes"]
        assert volume in document["volumes"]


def test_connection_urls_point_at_the_compose_services() -> None:
    running = services()
    postgres_env = running["postgres"]["environment"]
    for name in LONG_RUNNING | ONE_SHOT:
        env = running[name]["environment"]
        assert env["SYNCPLATFORM_ENV"] == "production"
        assert env["SECRET_KEY"] == REQUIRED_VARIABLES["SECRET_KEY"]
        assert env["ALLOWED_HOSTS"] == REQUIRED_VARIABLES["ALLOWED_HOSTS"]
        database = dj_database_url.parse(env["DATABASE_URL"])
        assert database["ENGINE"] == "django.db.backends.postgresql"
        assert (database["HOST"], database["PORT"]) == ("postgres", 5432)
        assert database["USER"] == postgres_env["POSTGRES_USER"] == "syncplatform"
        assert database["PASSWORD"] == postgres_env["POSTGRES_PASSWORD"]
        assert database["PASSWORD"] == REQUIRED_VARIABLES["POSTGRES_PASSWORD"]
        assert database["NAME"] == postgres_env["POSTGRES_DB"] == "syncplatform"
        assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert running["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "ops:compose-test"
    assert "FLOWER_BASIC_AUTH" not in running["web"]["environment"]


def test_settings_in_a_container_are_production_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = container_env("worker-low", REQUIRED_VARIABLES)
    loaded = settings_under(monkeypatch, env)
    assert loaded["PRODUCTION"] is True
    assert loaded["DEBUG"] is False
    assert loaded["ALLOWED_HOSTS"] == ["shop.example.com", "www.shop.example.com"]
    assert loaded["DATABASES"]["default"]["HOST"] == "postgres"
    assert loaded["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    assert loaded["SECURE_SSL_REDIRECT"] is True
    assert loaded["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert loaded["SESSION_COOKIE_SECURE"] is True
    assert loaded["STATIC_ROOT"] == Path("/app/staticfiles")
    # The code is read-only for the container's user: settings may only need directories
    # the image has made (collectstatic's output, the run directory).
    image_dirs = {"/app/staticfiles", "/var/lib/syncplatform", "/var/lib/syncplatform/media"}
    assert {str(path) for path in loaded["created directories"]} <= image_dirs
    # The media volume is mounted where uploads are written.
    media_mount = f"media:{loaded['MEDIA_ROOT']}"
    for name in ("web", "worker-high", "worker-default", "worker-low"):
        assert media_mount in services()[name]["volumes"], name
    assert "media" in compose()["volumes"]


def test_blank_pass_through_variables_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """`${X:-}` hands an empty string to the container: settings must read it as unset."""
    env = container_env("web", REQUIRED_VARIABLES)
    blanks = sorted(key for key, value in env.items() if value == "")
    assert "SECURE_SSL_REDIRECT" in blanks
    assert "RETRY_BACKOFF_CAP" in blanks
    with_blanks = settings_under(monkeypatch, env)
    without = settings_under(monkeypatch, {k: v for k, v in env.items() if v != ""})
    differing = sorted(key for key in with_blanks if repr(with_blanks[key]) != repr(without[key]))
    # A blank EMAIL_HOST changes the unused host name only: no host means the console backend.
    assert differing == ["EMAIL_HOST"]
    console = "django.core.mail.backends.console.EmailBackend"
    assert with_blanks["EMAIL_BACKEND"] == without["EMAIL_BACKEND"] == console


def test_compose_passes_only_variables_the_code_reads() -> None:
    known = variables_in(SETTINGS_FILE) | variables_in(LAUNCHER_FILE)
    for name in LONG_RUNNING | ONE_SHOT:
        unknown = set(services()[name]["environment"]) - known
        assert unknown == set(), f"{name} sets variables nothing reads: {unknown}"
    image_env = set(dockerfile_env()) - known
    python_and_pip = {n for n in image_env if n.startswith(("PYTHON", "PIP_"))}
    assert image_env - python_and_pip == set()


def test_compose_passes_every_setting_a_container_may_need() -> None:
    """A new variable in settings.py is either passed on by Compose or listed here (and in
    docs/operations.md) as one a production container does not need."""
    not_passed = {
        "DEBUG",
        "EMAIL_BACKEND",
        "EMAIL_FILE_PATH",
        "SQLITE_BUSY_TIMEOUT",
        "OUTBOX_FAST_PATH",
    }
    running = services()
    covered = set(running["web"]["environment"]) | set(running["flower"]["environment"])
    covered |= set(dockerfile_env())
    assert sorted(variables_in(SETTINGS_FILE) - covered) == sorted(not_passed)


def test_dockerfile_builds_one_image_for_every_process() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert base is not None
    assert base.group(1).startswith("python:3.11")
    assert re.search(r"^RUN .*pip install --no-deps \.", text, re.MULTILINE)
    assert "manage.py collectstatic --noinput" in text
    user = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert user, "the image must not run as root"
    assert user[-1] not in {"root", "0"}
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", text, re.MULTILINE)
    assert cmd is not None
    default = json.loads(cmd.group(1))
    # The default command is the web service's, less --workers (gunicorn reads
    # WEB_CONCURRENCY, which the image sets).
    web = command_of(services()["web"])
    index = web.index("--workers")
    assert default == web[:index] + web[index + 2 :]
    assert dockerfile_env()["WEB_CONCURRENCY"] == option_value(web, "--workers") == "2"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".run", ".env"} <= set(ignored)


@pytest.mark.parametrize(("service", "port"), [("web", 8000), ("storefront", 8001)])
@pytest.mark.parametrize(
    ("allowed_hosts", "expected_host"),
    [(".shop.example.com,admin.example.com", "shop.example.com"), ("*", "localhost")],
)
def test_web_healthcheck_reaches_healthz_in_production(
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    service: str,
    port: int,
    allowed_hosts: str,
    expected_host: str,
) -> None:
    """Run the health check's own Python; the request it builds must get a 200."""
    test = services()[service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    requests_made: list[urllib.request.Request] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda req, timeout: requests_made.append(req))
    monkeypatch.setenv("ALLOWED_HOSTS", allowed_hosts)
    exec(compile(test[3], "<healthcheck>", "exec"), {})  # noqa: S102
    [request] = requests_made
    assert request.full_url == f"http://127.0.0.1:{port}/healthz"
    assert request.get_header("Host") == expected_host
    settings.ALLOWED_HOSTS = allowed_hosts.split(",")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = Client().get("/healthz", HTTP_HOST=request.get_header("Host"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    # Anything else over plain HTTP is redirected to HTTPS.
    assert Client().get("/admin/", HTTP_HOST=expected_host).status_code == 301


def test_operations_guide_covers_every_variable_and_metric() -> None:
    guide = OPERATIONS_DOC.read_text()
    variables = variables_in(SETTINGS_FILE) | variables_in(LAUNCHER_FILE)
    assert {"SECRET_KEY", "WORKER_LOW_CONCURRENCY", "OUTBOX_RETENTION_SECONDS"} <= variables
    undocumented = sorted(name for name in variables if f"`{name}`" not in guide)
    assert undocumented == []
    metrics = set(re.findall(r"\"(syncplatform_[a-z_]+)\"", METRICS_FILE.read_text()))
    assert "syncplatform_outbox_backlog" in metrics
    assert sorted(name for name in metrics if f"`{name}`" not in guide) == []
    for command in ("run_outbox_relay", "ping_queues"):
        assert command in guide


def test_the_launcher_runs_everything_but_the_storefront_at_a_lower_priority() -> None:
    processes = launcher.build_processes(dict(LAUNCHER_ENV))
    niced = {name for name, command in processes.items() if "exec nice -n 15 " in command}
    # worker-low lowers itself (WORKER_LOW_NICENESS), the storefront stays as it is
    assert niced == LONG_RUNNING - {"storefront", "worker-low"}
    unchanged = launcher.build_processes({**LAUNCHER_ENV, "STOREFRONT_FIRST_NICENESS": "0"})
    assert not any("nice" in command for command in unchanged.values())
    # Compose: the storefront above PostgreSQL and Redis (default weight), the rest below, bulk
    # work lowest
    shares = {name: svc.get("cpu_shares", 1024) for name, svc in services().items()}
    assert shares["storefront"] > shares["postgres"] == shares["redis"] == 1024
    assert all(shares[name] < 1024 for name in LONG_RUNNING - {"storefront"})
    assert shares["worker-low"] == min(shares.values())
