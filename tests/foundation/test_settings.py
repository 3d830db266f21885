"""Production settings pass Django's deployment checks; missing secrets fail loudly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"} | env
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SYNCPLATFORM_ENV="production",
        SECRET_KEY="k3J9-vQ2_pL8zR5wX1mN7bT4yH6cF0dS-aG2eK8uW3oI5rE9tY1qZ7xC4vB6nM0",
        ALLOWED_HOSTS="shop.example.com",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", SYNCPLATFORM_ENV="production", ALLOWED_HOSTS="shop.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IMPORT_BATCH_SIZE", "0", "IMPORT_BATCH_SIZE must be between 1 and 1000"),
        ("IMPORT_BATCH_SIZE", "1001", "IMPORT_BATCH_SIZE must be between 1 and 1000"),
        ("IMPORT_RUN_CARD_POLL_MS", "0", "IMPORT_RUN_CARD_POLL_MS must be between 100 and 60000"),
        ("WORKER_LOW_NICENESS", "20", "WORKER_LOW_NICENESS must be between 0 and 19"),
    ],
)
def test_an_out_of_range_setting_stops_start_up_with_its_name(name, value, message):
    result = manage("check", **{name: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_the_run_cards_poll_interval_accepts_its_bounds():
    for value in ("100", "60000"):
        result = manage("check", IMPORT_RUN_CARD_POLL_MS=value)
        assert result.returncode == 0, result.stderr
