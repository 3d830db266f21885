"""The backoff schedule and the transient/permanent split, as pure logic."""

import statistics

import kombu.exceptions
import pytest
import requests
from django.db import IntegrityError, OperationalError

from syncplatform.retry import (
    PermanentError,
    TransientError,
    backoff_bound,
    backoff_countdown,
    is_transient,
)


@pytest.fixture
def production_backoff(settings):
    settings.RETRY_BACKOFF_BASE = 10.0
    settings.RETRY_BACKOFF_CAP = 600.0


def test_backoff_bound_doubles_from_the_base_until_the_cap(production_backoff):
    # Given the default policy (base 10 s, cap 10 min)
    # Then the window doubles per attempt and stops at the cap
    assert [backoff_bound(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 600, 600]


def test_countdowns_are_full_jitter_within_the_window(production_backoff):
    # When we draw many countdowns for each attempt
    for attempt in range(1, 8):
        draws = [backoff_countdown(attempt) for _ in range(400)]
        bound = backoff_bound(attempt)
        # Then each lies in [0, bound], and they spread over the whole window
        assert all(0 <= d <= bound for d in draws)
        assert min(draws) < bound * 0.15
        assert max(draws) > bound * 0.85
        assert statistics.mean(draws) == pytest.approx(bound / 2, rel=0.15)


def test_sub_second_bases_keep_their_jitter(settings):
    settings.RETRY_BACKOFF_BASE = 0.2
    settings.RETRY_BACKOFF_CAP = 1.0
    draws = {backoff_countdown(1) for _ in range(200)}
    assert len(draws) > 50
    assert max(draws) <= 0.2


@pytest.mark.parametrize(
    "exc",
    [
        TransientError("x"),
        OperationalError("database is locked"),
        kombu.exceptions.OperationalError("broker gone"),
        requests.ConnectionError("refused"),
        requests.Timeout("slow"),
        TimeoutError(),
    ],
)
def test_faults_of_the_surroundings_are_transient(exc):
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc", [PermanentError("bad"), ValueError("bad data"), IntegrityError("dup"), KeyError("x")]
)
def test_bad_data_and_bugs_are_permanent(exc):
    assert not is_transient(exc)
