# One image for every process of the platform: web, relay, the three workers, beat, Flower
# and the one-shot migrate job. docker-compose.yml picks the process with `command`; the
# default below is the web server. docs/operations.md describes each process.
FROM python:3.11-slim

# PYTHONPATH: the source tree in /app is what runs, for every entry point (gunicorn, celery,
# manage.py), so templates and static files kept next to the code are always found.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=syncplatform.settings \
    PYTHONPATH=/app \
    SYNCPLATFORM_RUN_DIR=/var/lib/syncplatform \
    STATIC_ROOT=/app/staticfiles \
    MEDIA_ROOT=/var/lib/syncplatform/media \
    WEB_CONCURRENCY=2

WORKDIR /app

# Dependencies first, read from pyproject.toml alone: a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself.
COPY . .
RUN pip install --no-deps . \
    && pip check \
    && rm -rf build ./*.egg-info \
    && python -m compileall -q /app

# Static files are part of the image (served by WhiteNoise). The key below exists only for
# this build step; a running container must be given its own SECRET_KEY.
RUN SECRET_KEY=collectstatic-at-build-time-only SYNCPLATFORM_RUN_DIR=/tmp/build-run \
    python manage.py collectstatic --noinput \
    && rm -rf /tmp/build-run

# Run as an unprivileged user. The code stays root-owned and read-only for it; only the run
# directory (uploaded import files under media/) is writable. Mount a volume there.
RUN groupadd --system --gid 10001 syncplatform \
    && useradd --system --uid 10001 --gid syncplatform --no-create-home \
       --home-dir /var/lib/syncplatform --shell /usr/sbin/nologin syncplatform \
    && mkdir -p /var/lib/syncplatform/media \
    && chown -R syncplatform:syncplatform /var/lib/syncplatform
USER syncplatform

EXPOSE 8000 5555

# gunicorn takes its worker count from WEB_CONCURRENCY.
CMD ["gunicorn", "syncplatform.wsgi", "--bind", "0.0.0.0:8000", "--threads", "2", "--access-logfile", "-", "--reuse-port", "--worker-tmp-dir", "/dev/shm"]
