"""Start the services the suite needs before Django reads its settings.

Loaded with `-p tests.plugin_services` so it runs ahead of pytest-django: when REDIS_URL is
not set (the embedded default), a private redis-server is started for the session and its
URL exported, so the test process and the worker processes it starts share one broker.
"""

from __future__ import annotations

import os

import pytest

_server = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    global _server
    if os.environ.get("REDIS_URL"):
        return
    from tests.support.redis_server import RedisServer

    _server = RedisServer().start()
    os.environ["REDIS_URL"] = _server.url


def pytest_unconfigure(config) -> None:
    if _server is not None:
        _server.stop()
