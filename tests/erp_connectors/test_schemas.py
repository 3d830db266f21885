"""The items' one-pass checks answer exactly as the full checks do.

`stock_item_check` and `price_item_check` recognise a well-formed item in one pass and hand anything
else to the full checks; whatever they accept must be stored exactly as the full checks
would store it, and nothing the full checks refuse may get through.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erp_connectors.schemas import (
    FieldError,
    _price_item_checked,
    _stock_item_checked,
    price_item_check,
    stock_item_check,
)

# Values near the edges of what the checks accept, with some plainly wrong ones.
texts = st.one_of(
    st.text(max_size=70),
    st.sampled_from(["SKU-1", "main", "a" * 64, "a" * 65, "", "x\x00y", "x\u00a0y", "x\ud800"]),
)
timestamps = st.one_of(
    st.sampled_from(
        [
            "2026-11-22T10:00:00Z",
            "2026-11-22t10:00:00z",
            "2026-11-22T10:00:00.1234567Z",
            "2026-11-22T10:00:00.000000Z",
            "2026-11-22T10:00:00.5+05:30",
            "2026-11-22T10:00:00-00:00",
            "2026-11-22 10:00:00Z",
            "2026-11-22T10:00:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-02-30T10:00:00Z",
            "2026-11-22T24:00:00Z",
        ]
    ),
    st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
    st.text(max_size=30),
)
amounts = st.one_of(
    st.decimals(min_value=-1, max_value=10**16, places=5, allow_nan=False).map(str),
    st.sampled_from(
        [
            "0",
            "00",
            "0.0",
            "0.5",
            "10",
            "10.50",
            "1.0001",
            "1.00001",
            "019.99",
            "999999999999999.9999",
            "1000000000000000",
            "1e2",
            " 1",
            "-1",
        ]
    ),
    st.integers(-5, 10**16),
    st.none(),
    st.booleans(),
)
quantities = st.one_of(st.integers(-2, 2**31 + 1), st.booleans(), st.none(), st.text(max_size=3))
currencies = st.one_of(st.sampled_from(["EUR", "eur", "EURO", "", "E1R"]), st.text(max_size=4))


good_texts = st.sampled_from(["SKU-1", "main", "a" * 32, "a" * 64, "Ä-ß/1"])
good_timestamps = st.sampled_from(["2026-11-22T10:00:00Z", "2026-11-22T10:00:00.1234567Z"])


def items(good: dict[str, Any], wild: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Well-formed items; the same with one value swapped for a wild one, or its key gone;
    items with any keys at all; and things that are not objects."""
    keys = sorted(good)
    whole = st.fixed_dictionaries(good)
    one_off = st.tuples(whole, st.sampled_from(keys), st.booleans()).flatmap(
        lambda case: (
            wild[case[1]].map(lambda value: {**case[0], case[1]: value})
            if case[2]
            else st.just({key: value for key, value in case[0].items() if key != case[1]})
        )
    )
    anything = st.fixed_dictionaries({}, optional={**wild, "extra": st.integers()})
    return st.one_of(whole, one_off, anything, st.sampled_from([None, [], "item", 7]))


stock_items = items(
    {
        "sku": good_texts,
        "warehouse": good_texts,
        "quantity": st.integers(0, 2**31 - 1),
        "updated_at": good_timestamps,
    },
    {"sku": texts, "warehouse": texts, "quantity": quantities, "updated_at": timestamps},
)
price_items = items(
    {
        "sku": good_texts,
        "currency": st.sampled_from(["EUR", "USD"]),
        "amount": st.sampled_from(["0", "19.9", "19.99", "100"]),
        "updated_at": good_timestamps,
    },
    {"sku": texts, "currency": currencies, "amount": amounts, "updated_at": timestamps},
)


# Pure functions, but CI runs this beside whole platforms in other processes: a loaded
# machine makes the first draws slow, which is no fault of the code under test.
both_answers = settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def answers(check: Any, raw: Any) -> tuple[Any, list[FieldError]]:
    errors: list[FieldError] = []
    return check(raw, "data.items[0]", errors), errors


@both_answers
@given(stock_items)
def test_a_stock_item_gets_the_answer_of_the_full_checks(raw: Any) -> None:
    assert answers(stock_item_check, raw) == answers(_stock_item_checked, raw)


@both_answers
@given(price_items)
def test_a_price_item_gets_the_answer_of_the_full_checks(raw: Any) -> None:
    assert answers(price_item_check, raw) == answers(_price_item_checked, raw)


def test_common_items_are_stored_in_their_one_spelling() -> None:
    at = "2026-11-22T10:00:00Z"
    stock = {"sku": "SKU-1", "warehouse": "main", "quantity": 5, "updated_at": at}
    price = {"sku": "SKU-1", "currency": "EUR", "amount": "19.90", "updated_at": at}
    assert answers(stock_item_check, stock) == (
        {**stock, "updated_at": "2026-11-22T10:00:00+00:00"},
        [],
    )
    assert answers(price_item_check, price)[0]["amount"] == "19.9"
    assert answers(price_item_check, {**price, "amount": "19.99"})[0]["amount"] == "19.99"
