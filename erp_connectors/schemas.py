"""Parse and validate webhook bodies (CONTRACT §2): strict JSON, every error with its path.

Nothing here touches the database. The output is plain data ready to store: the items are
kept in delivery order with normalised values (amounts as decimal strings, timestamps as
ISO 8601 strings), so the worker can rebuild them without validating again.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from catalog.models import (
    AMOUNT_DECIMAL_PLACES,
    AMOUNT_MAX_DIGITS,
    QUANTITY_MAX,
    SKU_MAX_LENGTH,
    WAREHOUSE_MAX_LENGTH,
)

from .models import WEBHOOK_ID_MAX_LENGTH, InboundEvent

MAX_ITEMS = 1000
_AMOUNT_STEP = Decimal(1).scaleb(-AMOUNT_DECIMAL_PLACES)
# The largest amount the catalog's price column holds.
AMOUNT_MAX = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES) - _AMOUNT_STEP
# An error list is for people to read; beyond this many the rest are only counted.
MAX_REPORTED_ERRORS = 100

_CURRENCY_RE = re.compile(r"[A-Z]{3}")
# Digits, optionally a fraction; no sign, exponent or spaces in the string form.
_AMOUNT_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
# An amount string already in the one spelling the checks give it (no leading zeros, no
# trailing fraction zeros, within the column's digits): stored as it is.
_CANONICAL_AMOUNT_RE = re.compile(
    rf"(?:0|[1-9][0-9]{{0,{AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES - 1}}})"
    rf"(?:\.[0-9]{{0,{AMOUNT_DECIMAL_PLACES - 1}}}[1-9])?"
)
# RFC 3339 date-time: the offset is mandatory, "T"/"Z" in either case.
_RFC3339_RE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d+))?(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)
# Control characters and lone surrogates: PostgreSQL refuses NUL and surrogates, and none
# of them belongs in an id, a sku or a warehouse code.
_BAD_CHAR_CATEGORIES = {"Cc", "Cs"}


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class ValidationFailed(Exception):
    """The request is malformed; `errors` says where and why."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors

    def as_body(self) -> dict[str, list[dict[str, str]]]:
        shown = [error.as_dict() for error in self.errors[:MAX_REPORTED_ERRORS]]
        hidden = len(self.errors) - len(shown)
        if hidden > 0:
            shown.append({"path": "", "message": f"{hidden} more error(s) not shown"})
        return {"errors": shown}


@dataclass(frozen=True)
class WebhookPayload:
    type: str
    occurred_at: datetime
    items: list[dict[str, Any]] = field(default_factory=list)


def webhook_id_validate(webhook_id: str) -> None:
    """Check the webhook-id header (already known to be present and signed)."""
    if len(webhook_id) > WEBHOOK_ID_MAX_LENGTH:
        raise ValidationFailed(
            [FieldError("webhook-id", f"must be at most {WEBHOOK_ID_MAX_LENGTH} characters")]
        )
    if _has_bad_chars(webhook_id):
        raise ValidationFailed([FieldError("webhook-id", "must not contain control characters")])


def body_decode(body: bytes) -> str:
    """Return the body as text; JSON is UTF-8 (RFC 8259 §8.1), anything else is refused."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            [FieldError("", f"body is not valid UTF-8 (byte offset {exc.start})")]
        ) from exc


def payload_parse(text: str) -> WebhookPayload:
    """Parse and validate a webhook body; raise ValidationFailed listing every problem."""
    document = json_load(text)
    errors: list[FieldError] = []
    if not isinstance(document, dict):
        raise ValidationFailed([FieldError("", "must be a JSON object")])

    event_type = document.get("type")
    type_ok = event_type in InboundEvent.Type.values
    if "type" not in document:
        errors.append(FieldError("type", "is required"))
    elif not type_ok:
        allowed = ", ".join(InboundEvent.Type.values)
        errors.append(FieldError("type", f"must be one of {allowed}"))

    occurred_at = _datetime(document, "timestamp", "timestamp", errors)

    items: list[dict[str, Any]] = []
    data = document.get("data")
    if "data" not in document:
        errors.append(FieldError("data", "is required"))
    elif not isinstance(data, dict):
        errors.append(FieldError("data", "must be an object"))
    elif "items" not in data:
        errors.append(FieldError("data.items", "is required"))
    elif not isinstance(data["items"], list):
        errors.append(FieldError("data.items", "must be an array"))
    elif not 1 <= len(data["items"]) <= MAX_ITEMS:
        errors.append(FieldError("data.items", f"must hold 1 to {MAX_ITEMS} items"))
    elif type_ok:
        validate_item = (
            stock_item_check if event_type == InboundEvent.Type.STOCK_UPDATED else price_item_check
        )
        for index, raw in enumerate(data["items"]):
            item = validate_item(raw, f"data.items[{index}]", errors)
            if item is not None:
                items.append(item)

    if errors:
        raise ValidationFailed(errors)
    assert occurred_at is not None  # no errors, so the timestamp was valid
    return WebhookPayload(type=event_type, occurred_at=occurred_at, items=items)


# -- JSON ---------------------------------------------------------------------------------
def json_load(text: str) -> Any:
    try:
        # Numbers with a fraction or exponent become Decimals: exact amounts, no float
        # rounding, and 1e400 stays a finite (if absurd) number instead of becoming inf.
        return json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicate_keys,
        )
    except RecursionError as exc:
        raise ValidationFailed([FieldError("", "JSON is nested too deeply")]) from exc
    except ValueError as exc:  # JSONDecodeError, our own rejections, over-long integers
        raise ValidationFailed([FieldError("", f"not valid JSON: {exc}")]) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key means different readers may see different values: refuse it.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


# -- items --------------------------------------------------------------------------------
# Every item of every webhook passes here, so the common case, a well-formed item, is
# recognised in one pass (`stock_item_check`, `price_item_check`) and returned exactly as the full
# checks would return it; anything else goes to the full checks, which say what is wrong.
# tests/erp_connectors/test_schemas.py holds the two to the same answers.
def stock_item_check(raw: Any, path: str, errors: list[FieldError]) -> dict[str, Any] | None:
    if type(raw) is dict:
        sku, warehouse = raw.get("sku"), raw.get("warehouse")
        quantity, updated_at = raw.get("quantity"), raw.get("updated_at")
        if (
            _plain_text(sku, SKU_MAX_LENGTH)
            and _plain_text(warehouse, WAREHOUSE_MAX_LENGTH)
            and type(quantity) is int
            and 0 <= quantity <= QUANTITY_MAX
            and type(updated_at) is str
            and (version := _rfc3339(updated_at)) is not None
        ):
            return {
                "sku": sku,
                "warehouse": warehouse,
                "quantity": quantity,
                "updated_at": version.isoformat(),
            }
    return _stock_item_checked(raw, path, errors)


def price_item_check(raw: Any, path: str, errors: list[FieldError]) -> dict[str, Any] | None:
    if type(raw) is dict:
        sku, currency = raw.get("sku"), raw.get("currency")
        amount, updated_at = raw.get("amount"), raw.get("updated_at")
        if (
            _plain_text(sku, SKU_MAX_LENGTH)
            and type(currency) is str
            and _CURRENCY_RE.fullmatch(currency)
            and type(amount) is str
            and _CANONICAL_AMOUNT_RE.fullmatch(amount)
            and type(updated_at) is str
            and (version := _rfc3339(updated_at)) is not None
        ):
            return {
                "sku": sku,
                "currency": currency,
                "amount": amount,
                "updated_at": version.isoformat(),
            }
    return _price_item_checked(raw, path, errors)


def _plain_text(value: Any, max_length: int) -> bool:
    """A string the full checks accept as it is: printable strings hold no Cc or Cs."""
    return type(value) is str and 0 < len(value) <= max_length and value.isprintable()


def _stock_item_checked(raw: Any, path: str, errors: list[FieldError]) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        errors.append(FieldError(path, "must be an object"))
        return None
    before = len(errors)
    sku = _text(raw, "sku", path, SKU_MAX_LENGTH, errors)
    warehouse = _text(raw, "warehouse", path, WAREHOUSE_MAX_LENGTH, errors)
    quantity = _quantity(raw, path, errors)
    updated_at = _datetime(raw, "updated_at", f"{path}.updated_at", errors)
    if len(errors) > before or updated_at is None:
        return None
    return {
        "sku": sku,
        "warehouse": warehouse,
        "quantity": quantity,
        "updated_at": updated_at.isoformat(),
    }


def _price_item_checked(raw: Any, path: str, errors: list[FieldError]) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        errors.append(FieldError(path, "must be an object"))
        return None
    before = len(errors)
    sku = _text(raw, "sku", path, SKU_MAX_LENGTH, errors)
    currency = _currency(raw, path, errors)
    amount = _amount(raw, path, errors)
    updated_at = _datetime(raw, "updated_at", f"{path}.updated_at", errors)
    if len(errors) > before or updated_at is None or amount is None:
        return None
    return {
        "sku": sku,
        "currency": currency,
        "amount": format(amount, "f"),
        "updated_at": updated_at.isoformat(),
    }


# -- fields -------------------------------------------------------------------------------
def _text(
    raw: dict[str, Any], key: str, parent: str, max_length: int, errors: list[FieldError]
) -> str | None:
    path = f"{parent}.{key}"
    if key not in raw:
        errors.append(FieldError(path, "is required"))
        return None
    value = raw[key]
    if not isinstance(value, str):
        errors.append(FieldError(path, "must be a string"))
        return None
    if not 1 <= len(value) <= max_length:
        errors.append(FieldError(path, f"must be 1 to {max_length} characters"))
        return None
    if _has_bad_chars(value):
        errors.append(FieldError(path, "must not contain control characters"))
        return None
    return value


def _quantity(raw: dict[str, Any], parent: str, errors: list[FieldError]) -> int | None:
    path = f"{parent}.quantity"
    if "quantity" not in raw:
        errors.append(FieldError(path, "is required"))
        return None
    value = raw["quantity"]
    # bool is an int in Python and 12.0 parses as a Decimal: both are refused here.
    if type(value) is not int:
        errors.append(FieldError(path, "must be an integer"))
        return None
    if not 0 <= value <= QUANTITY_MAX:
        errors.append(FieldError(path, f"must be between 0 and {QUANTITY_MAX}"))
        return None
    return value


def _currency(raw: dict[str, Any], parent: str, errors: list[FieldError]) -> str | None:
    path = f"{parent}.currency"
    if "currency" not in raw:
        errors.append(FieldError(path, "is required"))
        return None
    value = raw["currency"]
    if not isinstance(value, str) or not _CURRENCY_RE.fullmatch(value):
        errors.append(FieldError(path, "must be an ISO 4217 code in upper case, e.g. EUR"))
        return None
    return value


def _amount(raw: dict[str, Any], parent: str, errors: list[FieldError]) -> Decimal | None:
    path = f"{parent}.amount"
    if "amount" not in raw:
        errors.append(FieldError(path, "is required"))
        return None
    value = raw["amount"]
    if isinstance(value, str):
        if not _AMOUNT_RE.fullmatch(value):
            errors.append(FieldError(path, 'must be a decimal number such as "19.99"'))
            return None
        value = Decimal(value)
    elif type(value) is int:
        value = Decimal(value)
    elif not isinstance(value, Decimal):  # bool, null, arrays, objects
        errors.append(FieldError(path, "must be a decimal number (string or number)"))
        return None
    if value < 0:
        errors.append(FieldError(path, "must not be negative"))
        return None
    if value > AMOUNT_MAX:
        errors.append(FieldError(path, f"must be at most {AMOUNT_MAX}"))
        return None
    try:
        quantized = value.quantize(_AMOUNT_STEP)
    except InvalidOperation:
        quantized = None
    if quantized != value:
        errors.append(FieldError(path, f"must have at most {AMOUNT_DECIMAL_PLACES} decimal places"))
        return None
    # One spelling per value: no -0, no exponent, no trailing zeros ("1.5E+2" -> 150).
    return Decimal(0) if value == 0 else quantized.normalize()


def _datetime(
    raw: dict[str, Any], key: str, path: str, errors: list[FieldError]
) -> datetime | None:
    if key not in raw:
        errors.append(FieldError(path, "is required"))
        return None
    value = raw[key]
    parsed = _rfc3339(value) if isinstance(value, str) else None
    if parsed is None:
        errors.append(
            FieldError(path, "must be an RFC 3339 date-time with offset, e.g. 2026-11-22T10:00:00Z")
        )
    return parsed


def _rfc3339(value: str) -> datetime | None:
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        return None
    if value[10] == "T" and value[-1] != "z":
        # The usual spelling: fromisoformat reads it as it is ("Z" included) and, like
        # PostgreSQL, truncates a longer fraction to microseconds.
        text = value
    else:
        fraction = (match["fraction"] or "")[:6]
        offset = match["offset"].upper().replace("Z", "+00:00")
        text = f"{match['date']}T{match['time']}{'.' + fraction if fraction else ''}{offset}"
    try:
        parsed = datetime.fromisoformat(text)
        # Out-of-range results (year 1 minus an offset) would only fail later, in the DB.
        parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return parsed


def _has_bad_chars(value: str) -> bool:
    # isprintable() is False for every Cc and Cs character (and for some harmless ones, such
    # as a no-break space): one C-level pass clears the common case.
    if value.isprintable():
        return False
    return any(unicodedata.category(char) in _BAD_CHAR_CATEGORIES for char in value)
