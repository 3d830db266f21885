"""Settings, read from the environment (12-factor).

Locally nothing needs to be set: SQLite in WAL mode and the Redis that `make run` starts.
In production set SYNCPLATFORM_ENV=production, SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL and
REDIS_URL; docs/operations.md lists every variable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Where local state lives: the SQLite file, the embedded Redis, generated dev secrets, media.
RUN_DIR = Path(os.environ.get("SYNCPLATFORM_RUN_DIR", BASE_DIR / ".run")).resolve()
PRODUCTION = os.environ.get("SYNCPLATFORM_ENV", "local").strip().lower() == "production"

DEBUG = env_bool("DEBUG", False)


def _local_secret_key() -> str:
    """Return a per-checkout key kept in RUN_DIR, so local sessions survive restarts."""
    key_file = RUN_DIR / "secret_key"
    if not key_file.exists():
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when SYNCPLATFORM_ENV=production")
    SECRET_KEY = _local_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# Behind TLS in production: cookies only over HTTPS, HSTS, redirect plain HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
if env_bool("TRUST_X_FORWARDED_PROTO", PRODUCTION):
    # The load balancer terminates TLS and says so in this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Health probes come over plain HTTP from the orchestrator, never redirect them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_celery_results",
    "syncplatform.outbox",
    "syncplatform.deadletters",
    "catalog",
    "erp_connectors",
    "imports",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "syncplatform.middleware.DatabaseUnavailableMiddleware",
]
# Requests from machines, by path: webhooks, the JSON APIs (Bearer tokens or public),
# health checks and metrics. syncplatform/wsgi.py serves them through MACHINE_MIDDLEWARE,
# which leaves out what only pages for people in a browser use (sessions, CSRF,
# authentication, messages, clickjacking, static files); a request that carries the session
# cookie (a staff member's browser on the import API) gets MIDDLEWARE in full.
MACHINE_PATH_PREFIXES = ("/webhooks/", "/api/", "/healthz", "/readyz", "/metrics")
MACHINE_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "syncplatform.middleware.DatabaseUnavailableMiddleware",
]
# Seconds a client is asked to wait (Retry-After) while the database is unreachable.
DATABASE_UNAVAILABLE_RETRY_AFTER = env_int("DATABASE_UNAVAILABLE_RETRY_AFTER", 10)

ROOT_URLCONF = "syncplatform.urls"
WSGI_APPLICATION = "syncplatform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "syncplatform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{RUN_DIR / 'db.sqlite3'}"
DATABASES = {
    # Persistent connections: a new PostgreSQL connection per request costs more than the
    # request itself (a one-INSERT view does ~7x the req/s with them on this hardware).
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 600),
        conn_health_checks=True,
    ),
}
# The hottest statements (webhook intake and apply, storefront detail) are prepared once per
# connection on PostgreSQL (syncplatform/sql.py: statement_cursor). Turn off behind a pooler
# that cannot keep prepared statements (PgBouncer in transaction mode before 1.21).
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
_ON_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN
        # so concurrent writers queue on the busy timeout instead of failing mid-transaction.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_BUSY_TIMEOUT", 30),
    }
    # Worker processes started by the tests must see the test database: keep it on disk.
    DATABASES["default"]["TEST"] = {"NAME": str(RUN_DIR / "test_db.sqlite3")}
    RUN_DIR.mkdir(parents=True, exist_ok=True)
elif _ON_POSTGRES:
    # Django's backend with a health check that costs no round trip (syncplatform/postgresql).
    DATABASES["default"]["ENGINE"] = "syncplatform.postgresql"
    # Fail fast when the database is unreachable, so /readyz and intake can answer 503.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
        "DB_CONNECT_TIMEOUT", 3
    )
    if DB_PREPARED_STATEMENTS:
        # Django opens psycopg connections with preparing off (threshold None), which also
        # refuses an explicit prepare=True. Only statement_cursor asks for it; this
        # threshold is never reached by statements that do not ask.
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 2**31

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", RUN_DIR / "static"))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", RUN_DIR / "media"))
# WhiteNoise serves from here; it must exist even before the first collectstatic.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- ERP webhooks (erp_connectors) -----------------------------------------------------
# CONTRACT §2: bodies up to 5 MB; larger ones get 413 before they are read.
ERP_WEBHOOK_MAX_BODY_BYTES = env_int("ERP_WEBHOOK_MAX_BODY_BYTES", 5 * 1024 * 1024)

# --- Reconciliation (erp_connectors/reconciliation.py, CONTRACT §5) ---------------------
# (connect, read) seconds for every call to an ERP's REST API: a slow ERP must not hold a worker.
RECONCILE_TIMEOUT = (
    env_float("RECONCILE_CONNECT_TIMEOUT", 5.0),
    env_float("RECONCILE_READ_TIMEOUT", 30.0),
)
# Retries of one call after a connection error, a timeout, a 429 or a 5xx; then the run fails.
RECONCILE_MAX_RETRIES = env_int("RECONCILE_MAX_RETRIES", 4)
# Backoff between those retries: none before the first, then factor * 2**(n-1) seconds plus
# up to `factor` seconds of jitter, so many connectors' retries do not arrive together.
RECONCILE_BACKOFF_FACTOR = env_float("RECONCILE_BACKOFF_FACTOR", 2.0)
# The longest wait before one retry, also when the ERP's Retry-After asks for more: it bounds
# a call at about (retries + 1) * (connect + read) + retries * this.
RECONCILE_MAX_RETRY_WAIT = env_int("RECONCILE_MAX_RETRY_WAIT", 60)
# A run that moved no counter for this long is taken as abandoned (its process died), so a
# new run may start. It must outlast the slowest page (the bound above).
RECONCILE_STALE_SECONDS = env_int("RECONCILE_STALE_SECONDS", 1800)
# Hard time limit of a reconciliation task (soft limit one minute earlier): a whole catalog
# takes longer than the default limits of other tasks. Below the visibility timeout, or Redis
# would hand a running reconciliation to a second worker.
RECONCILE_TIME_LIMIT = env_int("RECONCILE_TIME_LIMIT", 3300)

# --- Email and alerts -------------------------------------------------------------------
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if os.environ.get("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
# For the file-based backend (django.core.mail.backends.filebased.EmailBackend).
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(RUN_DIR / "mail"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "syncplatform@localhost")
ALERT_EMAILS = env_list("ALERT_EMAILS", "")
ALERT_WEBHOOK_URL = os.environ.get("ALERT_WEBHOOK_URL", "")
# Operator alerts (notifications/alerts.py, CONTRACT §6). Each condition is announced at most
# once per window; windows follow the clock (with 3600, each whole hour).
ALERT_WINDOW_SECONDS = env_int("ALERT_WINDOW_SECONDS", 3600)
# Beat's interval for the check, used when the migration installs it; the admin edits it after.
ALERT_CHECK_SECONDS = env_int("ALERT_CHECK_SECONDS", 60)
# Longest wait of a queue's oldest message. `high` carries webhook applies and must stay fast;
# `low` carries import batches and reconciliation, which may queue behind a long run.
ALERT_QUEUE_LAG_SLO_SECONDS = {
    "high": env_int("ALERT_QUEUE_LAG_SLO_HIGH", 60),
    "default": env_int("ALERT_QUEUE_LAG_SLO_DEFAULT", 300),
    "low": env_int("ALERT_QUEUE_LAG_SLO_LOW", 1800),
}
# The relay publishes within a second or two; a row this old means publishing has stopped.
ALERT_OUTBOX_AGE_SECONDS = env_int("ALERT_OUTBOX_AGE_SECONDS", 120)
# The relay announces a broker outage itself (the check runs through the broker) once it
# has lasted this long: shorter blips are retried without waking anyone.
ALERT_BROKER_DOWN_SECONDS = env_int("ALERT_BROKER_DOWN_SECONDS", 60)
# An open import run whose counters have not moved for this long (a batch takes seconds).
ALERT_IMPORT_STALL_SECONDS = env_int("ALERT_IMPORT_STALL_SECONDS", 1800)
if ALERT_WINDOW_SECONDS < 1 or ALERT_CHECK_SECONDS < 1:
    raise ImproperlyConfigured("ALERT_WINDOW_SECONDS and ALERT_CHECK_SECONDS must be positive")

# --- Redis and Celery -------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6390/0"

CELERY_BROKER_URL = REDIS_URL
# Every queue the platform uses, declared once. `high` never waits behind bulk work because
# each queue has its own worker (CONTRACT §5).
QUEUE_NAMES = ("high", "default", "low")
CELERY_TASK_QUEUES = tuple(Queue(name, routing_key=name) for name in QUEUE_NAMES)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Routing by task name, in one place. Apps name tasks "<app>.<verb>_<object>". An exact name
# wins over any pattern (Celery's MapRoute).
CELERY_TASK_ROUTES = {
    "erp_connectors.apply_*": {"queue": "high"},
    # The alert check must not wait in `default`, which it watches and whose worker may be
    # the one that is down; it is short, and `high` has a worker of its own. Beat also sends
    # it to `default`, so that `high` is watched too (notifications/migrations/0003).
    "notifications.check_alerts": {"queue": "high"},
    "notifications.*": {"queue": "default"},
    "imports.start_*": {"queue": "default"},
    "imports.finish_*": {"queue": "default"},
    "imports.*": {"queue": "low"},
    "erp_connectors.reconcile_*": {"queue": "low"},
    # Beat's daily clean-up of expired task results (django-celery-results): clean-up → low.
    "celery.backend_cleanup": {"queue": "low"},
}
# JSON only: messages carry ids, never pickled objects.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# At-least-once delivery: ack after the task ran, so a killed worker's task is redelivered.
CELERY_TASK_ACKS_LATE = True
# A pool process killed mid-task (OOM, SIGKILL) requeues its message instead of dropping it.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message in hand per process: a long import batch never sits in a busy worker's buffer.
# The launcher raises it for the `high` queue, whose tasks are short.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis redelivers an unacked message after this long. It must outlast the longest task and
# the longest retry countdown (RETRY_BACKOFF_CAP), or a task would run twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "socket_connect_timeout": 3,
    "socket_timeout": 10,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# With late acks, tasks cut off by a lost broker connection are redelivered, so cancel them.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Soft limit raises inside the task (it can clean up); the hard limit kills the process.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 600)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 660)
# Results go to the database (django-celery-results), but only for tasks that ask: most
# tasks record their outcome on their own rows, and nobody reads an unused result.
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = env_int("CELERY_RESULT_EXPIRES", 7 * 24 * 3600)
# Beat reads its schedule from the database, so operators edit it in the admin; of several
# beat processes only the holder of a lease in Redis sends (syncplatform/beat.py).
CELERY_BEAT_SCHEDULER = "syncplatform.beat:LeaderScheduler"
# Seconds the leader's lease lasts unless renewed: a standby beat takes over this long after
# the leader dies. The leader renews it at least every third of it, so keep it well above the
# time a beat pass takes (a database query and a publish).
BEAT_LEASE_SECONDS = env_int("BEAT_LEASE_SECONDS", 30)
if BEAT_LEASE_SECONDS < 2:
    raise ImproperlyConfigured("BEAT_LEASE_SECONDS must be at least 2")
# Task events feed Flower's live view.
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("CELERY_WORKER_SEND_TASK_EVENTS", True)
# No "task-sent" event: it doubles the cost of every publish (a Redis PUBLISH and its
# handling in Flower), and Flower shows each task from "received" on without it.
CELERY_TASK_SEND_SENT_EVENT = env_bool("CELERY_TASK_SEND_SENT_EVENT", False)
# Workers keep their database connections like the web does (DB_CONN_MAX_AGE, health checks):
# Celery's Django fix-up would otherwise close them around every task, and a new PostgreSQL
# connection costs more than a webhook's whole apply. This turns the fix-up's closing off;
# syncplatform/celery.py closes old or broken connections around each task instead, as
# Django does around each request.
CELERY_DB_REUSE_MAX = 2**31
CELERY_TIMEZONE = TIME_ZONE

FLOWER_BASIC_AUTH = os.environ.get("FLOWER_BASIC_AUTH", "")

# --- Retry policy (syncplatform/retry.py) -----------------------------------------------
# Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n)).
RETRY_BACKOFF_BASE = env_float("RETRY_BACKOFF_BASE", 10.0)
RETRY_BACKOFF_CAP = env_float("RETRY_BACKOFF_CAP", 600.0)
RETRY_MAX_ATTEMPTS = env_int("RETRY_MAX_ATTEMPTS", 5)
# No work is retried past this age: after two hours the data is better re-fetched.
RETRY_DEADLINE_SECONDS = env_float("RETRY_DEADLINE_SECONDS", 2 * 3600.0)
if CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= RETRY_BACKOFF_CAP:
    raise ImproperlyConfigured("RETRY_BACKOFF_CAP must be shorter than the visibility timeout")
if not 60 < RECONCILE_TIME_LIMIT < CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]:
    raise ImproperlyConfigured(
        "RECONCILE_TIME_LIMIT must be over 60 s and shorter than the visibility timeout"
    )

# --- Outbox relay (syncplatform/outbox) -------------------------------------------------
OUTBOX_RELAY_BATCH_SIZE = env_int("OUTBOX_RELAY_BATCH_SIZE", 200)
# Rows of a task with a batch form (webhook applies) that one broker message may carry.
OUTBOX_RELAY_BATCH_MESSAGE_SIZE = env_int("OUTBOX_RELAY_BATCH_MESSAGE_SIZE", 20)
OUTBOX_RELAY_POLL_SECONDS = env_float("OUTBOX_RELAY_POLL_SECONDS", 0.5)
# Under load (the last pass published something), the next pass starts at least this long
# after the last one began, so the commits of a busy stretch share a pass, a message and a
# worker transaction: at 200 webhooks/s a pass then carries ~20 events instead of ~4, for at
# most this much added lag (with 0.02 s this 2-core host fell behind at 200 webhooks/s).
OUTBOX_RELAY_GATHER_SECONDS = env_float("OUTBOX_RELAY_GATHER_SECONDS", 0.1)
# While the broker is down the relay waits 1, 2, 4 … seconds up to this, then tries again.
OUTBOX_RELAY_MAX_BACKOFF_SECONDS = env_float("OUTBOX_RELAY_MAX_BACKOFF_SECONDS", 30.0)
# With nothing to publish, the relay asks the broker this often whether it answers, so that
# an outage on a quiet night is alerted (ALERT_BROKER_DOWN_SECONDS) before work piles up.
OUTBOX_RELAY_BROKER_PROBE_SECONDS = env_float("OUTBOX_RELAY_BROKER_PROBE_SECONDS", 30.0)
# Published rows are kept this long for audit, then pruned by the relay.
OUTBOX_RETENTION_SECONDS = env_float("OUTBOX_RETENTION_SECONDS", 7 * 24 * 3600.0)
# Publish from the request right after commit. On PostgreSQL the relay is woken by a NOTIFY
# at each commit that adds rows and publishes within milliseconds, so requests leave the
# broker to it (a publish costs more CPU than the rest of a webhook's intake); elsewhere
# the relay can only poll, and the fast path keeps the lag short.
OUTBOX_FAST_PATH = env_bool("OUTBOX_FAST_PATH", not _ON_POSTGRES)
# With the fast path on, the relay leaves fresh rows to it for this long, so the two rarely
# publish the same row (a re-publish is harmless, only wasteful).
OUTBOX_RELAY_GRACE_SECONDS = env_float(
    "OUTBOX_RELAY_GRACE_SECONDS", 2.0 if OUTBOX_FAST_PATH else 0.0
)

# CPU priority of a worker that consumes only `low` (0 = as everyone else): bulk work then
# yields the CPU to the web and the `high` worker (syncplatform/celery.py), which `make run`
# runs at STOREFRONT_FIRST_NICENESS (15).
WORKER_LOW_NICENESS = env_int("WORKER_LOW_NICENESS", 19)
if not 0 <= WORKER_LOW_NICENESS <= 19:
    raise ImproperlyConfigured("WORKER_LOW_NICENESS must be between 0 and 19")

# --- Imports (imports/) -----------------------------------------------------------------
# CONTRACT §4: CSV uploads up to 100 MB by default.
IMPORT_MAX_UPLOAD_BYTES = env_int("IMPORT_MAX_UPLOAD_BYTES", 100 * 1024 * 1024)
# Rows per batch task and per transaction; CONTRACT §4 caps it at 1,000.
IMPORT_BATCH_SIZE = env_int("IMPORT_BATCH_SIZE", 1000)
if not 1 <= IMPORT_BATCH_SIZE <= 1000:
    raise ImproperlyConfigured("IMPORT_BATCH_SIZE must be between 1 and 1000")
# The same file from the same uploader within this window is a duplicate (CONTRACT §4: 24 h).
IMPORT_DEDUP_WINDOW_SECONDS = env_int("IMPORT_DEDUP_WINDOW_SECONDS", 24 * 3600)
# How often (ms) the admin's run card asks for fresh counters while a run is open.
IMPORT_RUN_CARD_POLL_MS = env_int("IMPORT_RUN_CARD_POLL_MS", 1000)
# Below 100 ms every open run card would keep a web thread busy answering its polls.
if not 100 <= IMPORT_RUN_CARD_POLL_MS <= 60_000:
    raise ImproperlyConfigured("IMPORT_RUN_CARD_POLL_MS must be between 100 and 60000")
# Uploads larger than this are spooled to a temporary file while they arrive, never held in
# memory (Django's default, stated here because 100 MB imports depend on it).
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
FILE_UPLOAD_TEMP_DIR = os.environ.get("FILE_UPLOAD_TEMP_DIR") or None
# Caps the form fields beside an uploaded file (files do not count towards it).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}
