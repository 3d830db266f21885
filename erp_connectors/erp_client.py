"""Read an ERP's own view of stock and prices over its REST API (CONTRACT §5).

`GET {erp_url}/{resource}?limit=1000[&cursor=…]` with `Authorization: Bearer {erp_token}`
answers `{"items": [...], "next_cursor": "…" | null}`. Every call has a (connect, read)
timeout; connection errors, timeouts, 429 and 5xx are retried by urllib3's Retry with
backoff, honouring Retry-After up to a cap. Anything else that is not a page raises ErpError,
whose message names the call and the reason and never the token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from .schemas import ValidationFailed, body_decode, json_load

PAGE_LIMIT = 1000
# Retried as transient: the ERP is overloaded or briefly down.
RETRY_STATUSES = frozenset({HTTPStatus.TOO_MANY_REQUESTS, *range(500, 600)})


class ErpError(Exception):
    """The ERP could not be read; str() is the reason, fit for the run record and logs."""


@dataclass(frozen=True)
class ErpPage:
    url: str  # as shown in reasons: no credentials
    items: list[Any]
    next_cursor: str | None


class ErpClient:
    """A session against one ERP; use as a context manager so its connections are closed."""

    def __init__(self, *, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        connect, read = settings.RECONCILE_TIMEOUT
        self.timeout = (float(connect), float(read))
        self.retries = settings.RECONCILE_MAX_RETRIES
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        adapter = HTTPAdapter(max_retries=_retry_policy(self.retries))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __enter__(self) -> ErpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.session.close()

    def pages(self, resource: str) -> Iterator[ErpPage]:
        """Yield every page of `resource` ("stock" or "prices"), following next_cursor."""
        url = f"{self.base_url}/{resource}"
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"limit": PAGE_LIMIT}
            if cursor is not None:
                params["cursor"] = cursor
            page = self.page(url, params)
            yield page
            cursor = page.next_cursor
            if cursor is None:
                return
            if cursor in seen:
                # An ERP that hands out a cursor twice would keep us paging forever.
                raise ErpError(f"GET {page.url}: next_cursor {cursor!r} was already used")
            seen.add(cursor)

    def page(self, url: str, params: dict[str, Any]) -> ErpPage:
        """Fetch and check one page; raise ErpError if it cannot be read as one."""
        shown = _without_credentials(requests.Request("GET", url, params=params).prepare().url)
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ErpError(f"GET {shown}: {self._network_reason(exc)}") from None
        if response.status_code != HTTPStatus.OK:
            reason = f"{response.status_code} {_reason_phrase(response)}"
            if response.status_code in RETRY_STATUSES:
                reason += f" (after {self.retries} retries)"
            raise ErpError(f"GET {shown}: {reason}")
        return _parse(shown, response.content)

    def _network_reason(self, exc: requests.RequestException) -> str:
        cause: BaseException | None = exc.args[0] if exc.args else None
        if isinstance(cause, MaxRetryError):
            cause = cause.reason
        after = f" (after {self.retries} retries)"
        if isinstance(cause, ReadTimeoutError) or isinstance(exc, requests.ReadTimeout):
            return f"no answer within the read timeout of {self.timeout[1]} s{after}"
        # A refused connection is a NewConnectionError, which urllib3 derives from the timeout.
        if isinstance(cause, ConnectTimeoutError) and not isinstance(cause, NewConnectionError):
            return f"could not connect within {self.timeout[0]} s{after}"
        if isinstance(exc, requests.ConnectionError):
            # urllib3's text names the host and the OS error; headers never appear in it.
            return f"connection failed{after}: {cause or exc}"[:500]
        return f"request failed: {type(exc).__name__}"


def _retry_policy(retries: int) -> Retry:
    # raise_on_status=False: once retries are spent the last response comes back, so the
    # reason can name its status instead of urllib3's "too many 503 error responses".
    return Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=settings.RECONCILE_BACKOFF_FACTOR,
        backoff_jitter=settings.RECONCILE_BACKOFF_FACTOR,
        backoff_max=settings.RECONCILE_MAX_RETRY_WAIT,
        respect_retry_after_header=True,
        retry_after_max=settings.RECONCILE_MAX_RETRY_WAIT,
        raise_on_status=False,
    )


def _parse(url: str, content: bytes) -> ErpPage:
    try:
        # The webhook body's parser: amounts stay exact Decimals, duplicate keys are refused.
        document = json_load(body_decode(content))
    except ValidationFailed as exc:
        raise ErpError(f"GET {url}: the body is not JSON ({exc.errors[0].message})") from None
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise ErpError(f'GET {url}: the body is not a page (no "items" list)')
    next_cursor = document.get("next_cursor")
    if next_cursor is not None and (not isinstance(next_cursor, str) or not next_cursor):
        raise ErpError(f"GET {url}: next_cursor must be a non-empty string or null")
    return ErpPage(url=url, items=document["items"], next_cursor=next_cursor)


def _reason_phrase(response: requests.Response) -> str:
    try:
        return HTTPStatus(response.status_code).phrase
    except ValueError:
        return response.reason or "unknown status"


def _without_credentials(url: str | None) -> str:
    """Return the URL without a user:password@ part, should an erp_url carry one."""
    parts = urlsplit(url or "")
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=host))
