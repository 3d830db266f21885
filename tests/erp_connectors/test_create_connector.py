"""manage.py create_connector (CONTRACT §1)."""

from __future__ import annotations

import base64
import hashlib
import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from erp_connectors.credentials import webhook_secret_generate
from erp_connectors.models import Connector

pytestmark = pytest.mark.django_db


def run(*args: str) -> dict[str, Any]:
    out = StringIO()
    call_command("create_connector", *args, stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1  # one JSON object, nothing else on stdout
    return json.loads(lines[0])


def test_creation_generates_and_prints_both_secrets() -> None:
    printed = run("acme", "--name", "ACME ERP", "--email", "ops@acme.test")

    assert set(printed) == {"slug", "webhook_secret", "api_token"}
    assert printed["slug"] == "acme"
    secret = printed["webhook_secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24
    token = printed["api_token"]
    assert len(token) >= 32

    connector = Connector.objects.get(slug="acme")
    assert connector.name == "ACME ERP"
    assert connector.notify_email == "ops@acme.test"
    assert connector.enabled
    assert connector.webhook_secret == secret
    # Only a hash of the token is kept
    assert connector.api_token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {f.value_from_object(connector) for f in Connector._meta.fields}


def test_generated_secrets_differ() -> None:
    assert run("a")["webhook_secret"] != run("b")["webhook_secret"]


def test_given_secrets_and_settings_are_used() -> None:
    secret = webhook_secret_generate()
    printed = run(
        "acme",
        "--secret",
        secret,
        "--token",
        "my-own-token-0123456789",
        "--erp-url",
        "https://erp.acme.test/api",
        "--erp-token",
        "erp-side-token",
    )
    assert printed == {
        "slug": "acme",
        "webhook_secret": secret,
        "api_token": "my-own-token-0123456789",
    }
    connector = Connector.objects.get(slug="acme")
    assert connector.erp_url == "https://erp.acme.test/api"
    assert connector.erp_token == "erp-side-token"
    assert connector.name == "acme"


def test_update_without_secrets_keeps_them_and_prints_no_token() -> None:
    created = run("acme")
    token_hash = Connector.objects.get().api_token_hash

    printed = run("acme", "--name", "Renamed")

    assert printed == {
        "slug": "acme",
        "webhook_secret": created["webhook_secret"],
        "api_token": None,
    }
    connector = Connector.objects.get()
    assert connector.name == "Renamed"
    assert connector.api_token_hash == token_hash
    assert connector.webhook_secret_previous == ""


def test_update_with_a_new_secret_keeps_the_old_one_live() -> None:
    old = run("acme")["webhook_secret"]
    new = webhook_secret_generate()

    assert run("acme", "--secret", new)["webhook_secret"] == new

    connector = Connector.objects.get()
    assert connector.webhook_secret == new
    assert connector.webhook_secret_previous == old
    assert connector.live_webhook_secrets == [new, old]


def test_the_same_secret_again_is_not_a_rotation() -> None:
    secret = run("acme")["webhook_secret"]
    run("acme", "--secret", secret)
    assert Connector.objects.get().webhook_secret_previous == ""


def test_rotate_secret_and_new_token_on_update() -> None:
    created = run("acme")
    printed = run("acme", "--rotate-secret", "--new-token")
    assert printed["webhook_secret"] != created["webhook_secret"]
    assert printed["api_token"] not in (None, created["api_token"])
    connector = Connector.objects.get()
    assert connector.webhook_secret_previous == created["webhook_secret"]
    assert connector.api_token_hash == hashlib.sha256(printed["api_token"].encode()).hexdigest()


def test_update_with_a_token_replaces_it() -> None:
    run("acme")
    printed = run("acme", "--token", "replacement-token-0123456789")
    assert printed["api_token"] == "replacement-token-0123456789"


@pytest.mark.parametrize(
    "args",
    [
        ["--secret", "not-a-whsec"],
        ["--secret", "whsec_!!!!"],
        ["--secret", "whsec_" + base64.b64encode(b"short").decode()],
        ["--token", "short"],
        ["--token", "has spaces in the token 123"],
        ["--erp-url", "not a url"],
        ["--email", "not-an-email"],
    ],
)
def test_bad_values_are_refused_and_nothing_is_saved(args: list[str]) -> None:
    with pytest.raises(CommandError):
        run("acme", *args)
    assert Connector.objects.count() == 0


def test_bad_slug_is_refused() -> None:
    with pytest.raises(CommandError):
        run("not a slug")
    assert Connector.objects.count() == 0
