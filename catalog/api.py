"""Storefront read API (CONTRACT §3): public, read-only JSON over the catalog selectors."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .selectors import ProductView, product_get, product_page

DEFAULT_LIMIT = 100
MAX_LIMIT = 500

# RFC 3339 date-time with a mandatory offset. A space before the offset is a "+" that the
# query string decoded (clients often forget to escape it), so it is read as "+".
_RFC3339_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?P<offset>[Zz]|[+\- ]\d{2}:\d{2})",
    re.ASCII,
)
# Our cursors are about 60 characters; the bound keeps hostile input away from the decoder.
_CURSOR_MAX_LENGTH = 200
_ID_LIMIT = 2**63

_LIMIT_RE = re.compile(r"[0-9]{1,6}")

T = TypeVar("T")

View = Callable[..., HttpResponse]
Error = dict[str, str]


def read_only(view: View) -> View:
    """Answer 405 (JSON) to anything but GET and HEAD."""

    # Nothing here writes, so CSRF protection has nothing to guard; without this a POST
    # would get the middleware's 403 instead of a 405.
    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            response = _errors(405, [_error("", f"method {request.method} is not allowed")])
            response["Allow"] = "GET, HEAD"
            return response
        return view(request, *args, **kwargs)

    return wrapper


@read_only
def product_detail(request: HttpRequest, sku: str) -> HttpResponse:
    """Return one product with its stock and prices; 404 when the sku is unknown."""
    product = product_get(sku=sku)
    if product is None:
        return _errors(404, [_error("sku", "no product with this sku")])
    return _json(_product_json(product))


@read_only
def product_list(request: HttpRequest) -> HttpResponse:
    """Return a page of products in change order, with the absolute URL of the next page.

    Bad parameters are all reported at once as 400; the page costs three queries.
    """
    errors: list[Error] = []
    updated_since = _param(request, "updated_since", parse_rfc3339, errors)
    after = _param(request, "cursor", decode_cursor, errors)
    limit = _param(request, "limit", _parse_limit, errors)
    if errors:
        return _errors(400, errors)
    page = product_page(updated_since=updated_since, after=after, limit=limit or DEFAULT_LIMIT)
    next_url = None
    if page.next_after is not None:
        query = {"cursor": encode_cursor(page.next_after)}
        if updated_since is not None:
            query["updated_since"] = format_timestamp(updated_since)
        if limit is not None:
            query["limit"] = str(limit)
        next_url = request.build_absolute_uri(f"{request.path}?{urlencode(query)}")
    return _json({"results": [_product_json(p) for p in page.products], "next": next_url})


# -- parameters -----------------------------------------------------------------------------


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 date-time with an offset; raise ValueError otherwise."""
    match = _RFC3339_RE.fullmatch(value)
    if not match:
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-22T10:00:00Z")
    if match["offset"][0] == " ":
        value = value[: match.start("offset")] + "+" + value[match.start("offset") + 1 :]
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00
        raise ValueError("is outside the supported date range") from exc


def encode_cursor(after: tuple[datetime, int]) -> str:
    """Return the opaque cursor for the position after product `after` (changed_at, id)."""
    payload = json.dumps([format_timestamp(after[0]), after[1]], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Return the (changed_at, id) position of a cursor; raise ValueError if it is not ours."""
    try:
        if len(cursor) > _CURSOR_MAX_LENGTH:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        changed_at, last_id = json.loads(raw)
        if isinstance(last_id, bool) or not isinstance(last_id, int):
            raise TypeError
        if not 0 <= last_id < _ID_LIMIT:
            raise ValueError
        return parse_rfc3339(changed_at), last_id
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise ValueError("is not a cursor from a previous page") from exc


def _parse_limit(value: str) -> int:
    if not _LIMIT_RE.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise ValueError(f"must be an integer from 1 to {MAX_LIMIT}")
    return int(value)


def _param(
    request: HttpRequest, name: str, parse: Callable[[str], T], errors: list[Error]
) -> T | None:
    value = request.GET.get(name)
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        errors.append(_error(name, str(exc)))
        return None


# -- representation -------------------------------------------------------------------------


def format_timestamp(value: datetime) -> str:
    """Format as RFC 3339 in UTC with 'Z', always to the microsecond (cursors round-trip)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def format_amount(amount: Decimal) -> str:
    """Format money at least to cents, keeping further stored places only when not zero."""
    whole, _, fraction = f"{amount:f}".partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _product_json(product: ProductView) -> dict[str, Any]:
    return {
        "sku": product.sku,
        "name": product.name,
        "active": product.active,
        "available": product.available,
        "updated_at": format_timestamp(product.changed_at),
        "stock": [
            {
                "warehouse": level.warehouse,
                "quantity": level.quantity,
                "updated_at": format_timestamp(level.updated_at),
            }
            for level in product.stock
        ],
        "prices": [
            {
                "currency": price.currency,
                "amount": format_amount(price.amount),
                "updated_at": format_timestamp(price.updated_at),
            }
            for price in product.prices
        ],
    }


def _json(body: dict[str, Any], status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, json_dumps_params={"separators": (",", ":")})


def _error(path: str, message: str) -> Error:
    return {"path": path, "message": message}


def _errors(status: int, errors: list[Error]) -> JsonResponse:
    return _json({"errors": errors}, status=status)
