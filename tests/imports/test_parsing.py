"""The CSV reading layer of imports (contract §4): format, validation, streaming, re-reading.

Pure unit tests: byte strings in, rows and errors out; no database.
"""

from __future__ import annotations

import csv
import io
import re
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from imports.parsing import (
    GROUP_ACTIVE,
    GROUP_NAME,
    GROUP_PRICE,
    GROUP_STOCK,
    GROUP_UPDATED_AT,
    INVALID_VALUE,
    MALFORMED_ROW,
    MAX_LINE_BYTES,
    MISSING_VALUE,
    NAME_MAX_LENGTH,
    PRICE_MAX_DECIMAL_PLACES,
    PRICE_MAX_INTEGER_DIGITS,
    QUANTITY_MAX,
    SKU_MAX_LENGTH,
    WAREHOUSE_MAX_LENGTH,
    WRONG_WIDTH,
    CatalogRow,
    CsvFormatError,
    CsvHeader,
    RecordSpan,
    RowError,
    iter_line_range,
    neutralise_formula,
    open_catalog_csv,
    plan_batches,
    write_error_report,
)

FULL_COLUMNS = ["sku", "name", "price", "currency", "quantity", "warehouse", "updated_at", "active"]
VALID = {
    "sku": "SKU-1",
    "name": "Widget",
    "price": "19.99",
    "currency": "EUR",
    "quantity": "5",
    "warehouse": "main",
    "updated_at": "2026-11-22T09:59:58Z",
    "active": "yes",
}


def read(data: bytes, **kwargs: str) -> tuple[CsvHeader, list[CatalogRow | RowError]]:
    header, items = open_catalog_csv(io.BytesIO(data), **kwargs)
    return header, list(items)


def rows_of(data: bytes, **kwargs: str) -> list[CatalogRow | RowError]:
    return read(data, **kwargs)[1]


def make_csv(*records: dict[str, str], delimiter: str = ",") -> bytes:
    """A full-width file with properly quoted cells; the header is line 1."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(FULL_COLUMNS)
    for record in records:
        writer.writerow([record[column] for column in FULL_COLUMNS])
    return out.getvalue().encode()


class TrickleStream(io.RawIOBase):
    """Hands out one byte per read: every line end falls on a read boundary at some point."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._position >= len(self._data) or not len(buffer):
            return 0
        buffer[0] = self._data[self._position]
        self._position += 1
        return 1


class GeneratedCsv(io.RawIOBase):
    """A non-seekable stream producing `rows` data rows on demand, never holding the file."""

    def __init__(self, rows: int) -> None:
        self._blocks = self._generate(rows)
        self._pending = b""

    @staticmethod
    def _generate(rows: int) -> Iterator[bytes]:
        yield b"sku,name,price,currency,quantity,warehouse,updated_at,active\r\n"
        block = []
        for number in range(rows):
            block.append(
                b"SKU-%d,Product %d,19.99,EUR,%d,main,2026-11-22T09:59:58Z,yes\r\n"
                % (number, number, number)
            )
            if len(block) == 500:
                yield b"".join(block)
                block.clear()
        yield b"".join(block)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._blocks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


# --------------------------------------------------------------------------- valid rows


def test_a_full_row_is_parsed_into_typed_values() -> None:
    # Given a file with every column
    data = make_csv(VALID)
    # When it is read
    header, items = read(data)
    # Then the header knows every group and the row carries typed values
    assert header.groups == {GROUP_NAME, GROUP_PRICE, GROUP_STOCK, GROUP_UPDATED_AT, GROUP_ACTIVE}
    assert header.delimiter == ","
    assert header.warnings == []
    assert items == [
        CatalogRow(
            line=2,
            sku="SKU-1",
            name="Widget",
            price=Decimal("19.99"),
            currency="EUR",
            quantity=5,
            warehouse="main",
            updated_at=datetime(2026, 11, 22, 9, 59, 58, tzinfo=UTC),
            active=True,
        )
    ]


def test_values_are_trimmed_and_empty_optional_values_are_not_given() -> None:
    # Given padded values and empty optional cells (both halves of each group empty)
    data = b"sku,name,price,currency,quantity,warehouse,updated_at,active\n  A-1 ,,,,,,,\n"
    # When it is read
    [row] = rows_of(data)
    # Then the sku is trimmed and nothing else is given
    assert row == CatalogRow(2, "A-1", None, None, None, None, None, None, None)


def test_a_sku_only_file_is_a_single_column_file() -> None:
    # Given a file with one column and no delimiter in its header
    header, items = read(b"sku\nA\nB\n")
    # Then the delimiter defaults to a comma and each line is a row
    assert header.delimiter == ","
    assert header.groups == set()
    assert [(row.line, row.sku) for row in items] == [(2, "A"), (3, "B")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T09:59:58Z", datetime(2026, 11, 22, 9, 59, 58, tzinfo=UTC)),
        ("2026-11-22T09:59:58.120Z", datetime(2026, 11, 22, 9, 59, 58, 120000, tzinfo=UTC)),
        (
            "2026-11-22t10:59:58+01:00",
            datetime(2026, 11, 22, 10, 59, 58, tzinfo=timezone(timedelta(hours=1))),
        ),
        (
            "2026-11-22 04:59:58-05:00",
            datetime(2026, 11, 22, 4, 59, 58, tzinfo=timezone(timedelta(hours=-5))),
        ),
    ],
)
def test_updated_at_accepts_rfc3339_with_offset(text: str, expected: datetime) -> None:
    [row] = rows_of(make_csv({**VALID, "updated_at": text}))
    assert isinstance(row, CatalogRow)
    assert row.updated_at == expected
    assert row.updated_at is not None
    assert row.updated_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("yes", True), ("TRUE", True), ("1", True), ("No", False), ("false", False), ("0", False)],
)
def test_active_accepts_the_usual_spellings(text: str, expected: bool) -> None:
    [row] = rows_of(make_csv({**VALID, "active": text}))
    assert isinstance(row, CatalogRow)
    assert row.active is expected


@pytest.mark.parametrize(
    ("column", "text", "attribute", "expected"),
    [
        ("sku", "S" * 64, "sku", "S" * 64),
        ("warehouse", "W" * 32, "warehouse", "W" * 32),
        ("quantity", "0", "quantity", 0),
        ("quantity", "2147483647", "quantity", 2_147_483_647),
        ("quantity", "007", "quantity", 7),
        ("price", "0", "price", Decimal("0")),
        ("price", "1.2345", "price", Decimal("1.2345")),
        ("price", "1.23450", "price", Decimal("1.2345")),  # a trailing zero is no 5th place
        ("price", "999999999999999.9999", "price", Decimal("999999999999999.9999")),
    ],
)
def test_values_on_the_limits_are_accepted(
    column: str, text: str, attribute: str, expected: object
) -> None:
    [row] = rows_of(make_csv({**VALID, column: text}))
    assert isinstance(row, CatalogRow)
    assert getattr(row, attribute) == expected


def test_limits_match_the_catalog_columns() -> None:
    # The parser repeats the catalog's limits to stay free of Django; they must not drift apart
    from catalog import models as catalog_models  # here, so the other tests need no app code

    assert (SKU_MAX_LENGTH, NAME_MAX_LENGTH, WAREHOUSE_MAX_LENGTH, QUANTITY_MAX) == (
        catalog_models.SKU_MAX_LENGTH,
        catalog_models.NAME_MAX_LENGTH,
        catalog_models.WAREHOUSE_MAX_LENGTH,
        catalog_models.QUANTITY_MAX,
    )
    assert PRICE_MAX_DECIMAL_PLACES == catalog_models.AMOUNT_DECIMAL_PLACES
    assert PRICE_MAX_INTEGER_DIGITS + PRICE_MAX_DECIMAL_PLACES == catalog_models.AMOUNT_MAX_DIGITS


# --------------------------------------------------------------------------- row errors


@pytest.mark.parametrize(
    ("column", "text", "error_column", "code", "message_part"),
    [
        ("sku", "", "sku", MISSING_VALUE, "sku is empty"),
        ("sku", "S" * 65, "sku", INVALID_VALUE, "longer than 64"),
        ("sku", "A\x00B", "sku", INVALID_VALUE, "control characters"),
        ("name", "N" * 256, "name", INVALID_VALUE, "longer than 255"),
        ("name", "bad\x00name", "name", INVALID_VALUE, "control characters"),
        ("price", "abc", "price", INVALID_VALUE, "not a decimal number"),
        ("price", "-1", "price", INVALID_VALUE, "negative"),
        ("price", "1.23456", "price", INVALID_VALUE, "more than 4 decimal places"),
        ("price", "1e3", "price", INVALID_VALUE, "not a decimal number"),
        ("price", "NaN", "price", INVALID_VALUE, "not a decimal number"),
        ("price", "19,99", "price", INVALID_VALUE, "use a decimal point"),
        ("price", "1" + "0" * 15, "price", INVALID_VALUE, "too large"),
        ("price", "", "price", MISSING_VALUE, "price is empty but currency is given"),
        ("currency", "", "currency", MISSING_VALUE, "currency is empty but price is given"),
        ("currency", "eur", "currency", INVALID_VALUE, "use upper case"),
        ("currency", "EURO", "currency", INVALID_VALUE, "ISO 4217"),
        ("currency", "€", "currency", INVALID_VALUE, "ISO 4217"),
        ("quantity", "1.5", "quantity", INVALID_VALUE, "not a whole number"),
        ("quantity", "1e3", "quantity", INVALID_VALUE, "not a whole number"),
        ("quantity", "-1", "quantity", INVALID_VALUE, "negative"),
        ("quantity", "2147483648", "quantity", INVALID_VALUE, "exceeds 2147483647"),
        ("quantity", "9" * 5000, "quantity", INVALID_VALUE, "exceeds 2147483647"),
        ("quantity", "", "quantity", MISSING_VALUE, "quantity is empty but warehouse"),
        ("warehouse", "", "warehouse", MISSING_VALUE, "warehouse is empty but quantity"),
        ("warehouse", "W" * 33, "warehouse", INVALID_VALUE, "longer than 32"),
        ("updated_at", "2026-11-22T09:59:58", "updated_at", INVALID_VALUE, "no UTC offset"),
        ("updated_at", "2026-11-22", "updated_at", INVALID_VALUE, "no UTC offset"),
        ("updated_at", "22.11.2026 10:00", "updated_at", INVALID_VALUE, "not an RFC 3339"),
        ("updated_at", "2026-11-22T09:59:58+0100", "updated_at", INVALID_VALUE, "RFC 3339"),
        ("updated_at", "2026-13-01T00:00:00Z", "updated_at", INVALID_VALUE, "not a valid date"),
        ("active", "maybe", "active", INVALID_VALUE, "true/false"),
        ("active", "y", "active", INVALID_VALUE, "true/false"),
    ],
)
def test_each_invalid_value_is_a_row_error_on_its_line(
    column: str, text: str, error_column: str, code: str, message_part: str
) -> None:
    # Given a valid row, a row with one bad cell, and another valid row
    bad = {**VALID, "sku": "SKU-2", column: text}
    data = make_csv(VALID, bad, {**VALID, "sku": "SKU-3"})
    # When the file is read
    first, error, last = rows_of(data)
    # Then the bad row is one error naming line 3 and the column; reading goes on around it
    assert isinstance(first, CatalogRow)
    assert first.line == 2
    assert isinstance(error, RowError)
    assert (error.line, error.column, error.code) == (3, error_column, code)
    sku = bad["sku"].strip().replace("\x00", "\ufffd")  # NUL cannot be stored: see below
    assert error.sku == sku[:63] + ("…" if len(sku) > 64 else "")
    assert message_part in error.message
    assert isinstance(last, CatalogRow)
    assert last.line == 4


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"sku,name\nA\x00B,x\n", RowError(2, "A\ufffdB", "sku", INVALID_VALUE, "")),
        (b"sku,name\nA,x\x00y\n", RowError(2, "A", "name", INVALID_VALUE, "")),
        (b"sku,price,currency\nA,1\x00,EUR\n", RowError(2, "A", "price", INVALID_VALUE, "")),
        (b"sku,name\nA\x00B,x,extra\n", RowError(2, "A\ufffdB", "", WRONG_WIDTH, "")),
    ],
)
def test_nul_from_the_file_is_a_row_error_whose_text_can_be_stored(
    data: bytes, expected: RowError
) -> None:
    # PostgreSQL text cannot hold NUL: one in a stored error would fail the whole batch.
    [error] = rows_of(data)
    assert isinstance(error, RowError)
    assert error[:4] == expected[:4]
    assert "\x00" not in "".join(error[1:])


def test_nul_in_a_header_name_does_not_reach_a_warning_or_a_run_error() -> None:
    # Given an unknown column whose name holds a NUL
    header, [row] = read(b"sku,Col\x00our\nA,red\n")
    # Then the warning shows it as U+FFFD and the row is read without it
    assert header.warnings == ["unknown column 'Col\ufffdour' is ignored"]
    assert isinstance(row, CatalogRow)
    # And a header refused as a whole quotes it the same way
    with pytest.raises(CsvFormatError) as raised:
        open_catalog_csv(io.BytesIO(b"name,Col\x00our\nx,red\n"))
    assert "'col\ufffdour'" in raised.value.message
    assert "\x00" not in str(raised.value)


def test_an_overlong_sku_is_shortened_in_the_error() -> None:
    [error] = rows_of(make_csv({**VALID, "sku": "S" * 100}))
    assert isinstance(error, RowError)
    assert error.sku == "S" * 63 + "…"


def test_a_row_of_the_wrong_width_is_a_row_error() -> None:
    # Given rows with one field too many and one too few
    data = b"sku,name\nA,x,extra\nB\nC,ok\n"
    # When read
    too_wide, too_narrow, fine = rows_of(data)
    # Then both are wrong_width errors on their lines, with the sku when there is one
    assert too_wide == RowError(
        2, "A", "", WRONG_WIDTH, "the row has 3 fields but the header has 2"
    )
    assert too_narrow == RowError(
        3, "B", "", WRONG_WIDTH, "the row has 1 fields but the header has 2"
    )
    assert fine == CatalogRow(4, "C", "ok", None, None, None, None, None, None)


def test_text_after_a_closing_quote_is_a_malformed_row_and_reading_goes_on() -> None:
    # Given a row with broken quoting between two good rows
    data = b'sku,name\nA,ok\nB,"half"quoted\nC,ok\n'
    # When read
    first, broken, last = rows_of(data)
    # Then the broken record is one malformed_row error and the next row is still read
    assert isinstance(broken, RowError)
    assert (broken.line, broken.code) == (3, MALFORMED_ROW)
    assert (first.line, last.line) == (2, 4)
    assert isinstance(last, CatalogRow)
    assert last.sku == "C"


def test_a_quote_never_closed_is_one_malformed_row_up_to_the_end() -> None:
    # Given a quote opened on line 3 and never closed
    data = b'sku,name\nA,ok\nB,"open\nC,x\nD,y\n'
    # When read
    first, broken = rows_of(data)
    # Then the rest of the file is that one record, reported as malformed on line 3
    assert isinstance(first, CatalogRow)
    assert isinstance(broken, RowError)
    assert (broken.line, broken.code) == (3, MALFORMED_ROW)
    assert "never closed" in broken.message
    assert "lines 3-5" in broken.message


# --------------------------------------------------------------------------- file format


def test_a_utf8_bom_is_ignored() -> None:
    # Given a UTF-8 file with a byte order mark before the header
    data = b"\xef\xbb\xbfsku,name\nA,Caf\xc3\xa9\n"
    # When read
    header, items = read(data)
    # Then the first column is still 'sku' and the text is decoded
    assert header.columns == ["sku", "name"]
    assert items == [CatalogRow(2, "A", "Café", None, None, None, None, None, None)]


def test_semicolon_files_accept_a_decimal_comma() -> None:
    # Given a European spreadsheet export: semicolons and decimal commas
    data = b"sku;name;price;currency\nA;Smith, John;19,99;EUR\nB;x;5.50;EUR\n"
    # When read
    header, (first, second) = read(data)
    # Then the delimiter comes from the header, commas in text stay text, both prices parse
    assert header.delimiter == ";"
    assert isinstance(first, CatalogRow)
    assert isinstance(second, CatalogRow)
    assert first.name == "Smith, John"
    assert first.price == Decimal("19.99")
    assert second.price == Decimal("5.50")


def test_a_semicolon_file_rejects_thousands_separators() -> None:
    [error] = rows_of(b"sku;price;currency\nA;1.234,56;EUR\n")
    assert isinstance(error, RowError)
    assert (error.column, error.code) == ("price", INVALID_VALUE)


def test_tab_delimited_files_are_read() -> None:
    header, items = read(b"sku\tname\tquantity\twarehouse\nA\tWidget, large\t3\tmain\n")
    assert header.delimiter == "\t"
    assert items == [CatalogRow(2, "A", "Widget, large", None, None, 3, "main", None, None)]


@pytest.mark.parametrize(
    "data",
    [
        b"sku,name\r\nA,x\r\nB,y\r\n",  # Windows
        b"sku,name\nA,x\nB,y",  # Unix, no final line break
        b"sku,name\rA,x\rB,y\r",  # classic Mac
    ],
)
def test_every_line_ending_gives_the_same_rows(data: bytes) -> None:
    items = rows_of(data)
    assert [(row.line, row.sku, getattr(row, "name", None)) for row in items] == [
        (2, "A", "x"),
        (3, "B", "y"),
    ]


MULTILINE = (
    b"sku,name\r\n"  # 1
    b'A,"two\r\nlines"\r\n'  # 2-3
    b"\r\n"  # 4: blank
    b'B,"x,y"\r\n'  # 5
    b'C,"a\nb\nc, ""quoted"""\n'  # 6-8
    b",,\r\n"  # 9: only delimiters, a spreadsheet's empty row (wrong width too)
    b"D,\r\n"  # 10
    b",no sku\r\n"  # 11
)


def test_quoted_delimiters_and_newlines_keep_line_numbers_right() -> None:
    # Given quoted delimiters, multi-line records, blank lines and an error at the end
    # When read
    items = rows_of(MULTILINE)
    # Then values keep their delimiters and line breaks, and each item names its first line
    assert [(row.line, row.sku) for row in items] == [
        (2, "A"),
        (5, "B"),
        (6, "C"),
        (10, "D"),
        (11, ""),
    ]
    a, b, c, d, error = items
    assert isinstance(a, CatalogRow)
    assert a.name == "two\r\nlines"
    assert isinstance(b, CatalogRow)
    assert b.name == "x,y"
    assert isinstance(c, CatalogRow)
    assert c.name == 'a\nb\nc, "quoted"'
    assert isinstance(d, CatalogRow)
    assert d.name is None
    assert isinstance(error, RowError)
    assert error.code == MISSING_VALUE


def test_read_boundaries_anywhere_give_the_same_result() -> None:
    # Given a stream that returns a single byte per read, splitting every CRLF at some point
    # When read
    header, items = open_catalog_csv(TrickleStream(MULTILINE))  # type: ignore[arg-type]
    # Then the result is the same as from one buffer
    assert list(items) == rows_of(MULTILINE)
    assert header.columns == ["sku", "name"]


def test_cp1252_is_read_when_the_encoding_is_given() -> None:
    # Given a file saved by a Windows spreadsheet in cp1252
    data = "sku;name;price;currency\nA;Café à 5 €;1,50;EUR\n".encode("cp1252")
    # When read with encoding=cp1252
    header, [row] = read(data, encoding="cp1252")
    # Then the text decodes correctly
    assert header.encoding == "cp1252"
    assert isinstance(row, CatalogRow)
    assert row.name == "Café à 5 €"


def test_undecodable_bytes_are_a_clear_error_on_their_line() -> None:
    # Given a cp1252 file read as UTF-8 (the default), the bad byte on line 3
    data = b"sku,name\nA,ok\nB,caf\xe9\nC,ok\n"
    _header, items = open_catalog_csv(io.BytesIO(data))
    # When it is read, the rows before the bad line come through
    first = next(items)
    assert isinstance(first, CatalogRow)
    assert first.line == 2
    # Then the bad line stops the run with a message naming the line and the remedy
    with pytest.raises(CsvFormatError) as raised:
        next(items)
    assert raised.value.line == 3
    assert "line 3, character 6: byte 0xe9 cannot be decoded as utf-8" in str(raised.value)
    assert "cp1252" in str(raised.value)


def test_a_utf8_bom_wins_over_a_wrong_encoding_argument() -> None:
    header, [row] = read(b"\xef\xbb\xbfsku,name\nA,Caf\xc3\xa9\n", encoding="cp1252")
    assert isinstance(row, CatalogRow)
    assert row.name == "Café"
    assert header.encoding == "utf-8"
    assert any("byte order mark" in warning for warning in header.warnings)


@pytest.mark.parametrize(
    ("data", "encoding", "message_part"),
    [
        ("sku,name\nA,x\n".encode("utf-16"), None, "UTF-16"),
        (b"sku\nA\n", "utf-16", "not supported"),
        (b"sku\nA\n", "no-such-encoding", "unknown encoding"),
        (b"sku\nA\n", "utf\x008", "unknown encoding"),
        (b"sku\nA+49\n", "utf-7", "not supported"),
        (b"sku\nA\\u0041\n", "raw_unicode_escape", "not supported"),
        (b"sku\nA\n", "idna", "not supported"),
    ],
)
def test_encodings_that_cannot_be_read_are_refused(
    data: bytes, encoding: str | None, message_part: str
) -> None:
    with pytest.raises(CsvFormatError, match=message_part):
        open_catalog_csv(io.BytesIO(data), encoding=encoding)


# --------------------------------------------------------------------------- the header


def test_header_names_are_case_insensitive_and_trimmed() -> None:
    # Given upper-case, padded and quoted header names
    data = b'  SKU  ;"Name ";  Price;CURRENCY \nA;x;1;EUR\n'
    # When read
    header, [row] = read(data)
    # Then they are recognised
    assert header.columns == ["sku", "name", "price", "currency"]
    assert header.groups == {GROUP_NAME, GROUP_PRICE}
    assert header.warnings == []
    assert isinstance(row, CatalogRow)
    assert (row.sku, row.price) == ("A", Decimal("1"))


def test_unknown_and_unnamed_columns_are_ignored_with_a_warning() -> None:
    # Given a column the contract does not know, and a trailing unnamed column
    data = b"sku,Colour,name,\nA,red,x,\n"
    # When read
    header, [row] = read(data)
    # Then each is named in a warning and the row is read without them
    assert header.warnings == [
        "unknown column 'Colour' is ignored",
        "column 4 has no name and is ignored",
    ]
    assert row == CatalogRow(2, "A", "x", None, None, None, None, None, None)


@pytest.mark.parametrize(
    ("header_line", "message"),
    [
        (b"sku,price\n", "column 'price' needs 'currency'; give both or neither"),
        (b"sku,currency\n", "column 'currency' needs 'price'; give both or neither"),
        (b"sku,quantity\n", "column 'quantity' needs 'warehouse'; give both or neither"),
        (b"sku,warehouse\n", "column 'warehouse' needs 'quantity'; give both or neither"),
    ],
)
def test_half_a_column_group_is_a_run_error(header_line: bytes, message: str) -> None:
    # When a file carries only half of a group, the header alone is refused
    with pytest.raises(CsvFormatError) as raised:
        open_catalog_csv(io.BytesIO(header_line + b"A,1\n"))
    # Then the message says what is missing
    assert raised.value.message == message
    assert raised.value.line == 1


@pytest.mark.parametrize(
    ("data", "message_part"),
    [
        (b"", "the file is empty"),
        (b"\xef\xbb\xbf", "the file is empty"),
        (b"\r\n  \r\n", "the file is empty"),
        (b"name,price\nx,1\n", "no 'sku' column (found 'name', 'price')"),
        (b"sku|name\nA|x\n", "no 'sku' column (found 'sku|name')"),
        (b"sku,name,SKU\n", "column 'sku' appears twice (columns 1 and 3)"),
        (b"sku;name,price\n", "cannot tell the delimiter"),
        (b'"sku\nA\n', "header row (line 1) is not valid CSV"),
    ],
)
def test_files_that_cannot_be_imported_fail_before_any_row(data: bytes, message_part: str) -> None:
    with pytest.raises(CsvFormatError, match=re.escape(message_part)):
        open_catalog_csv(io.BytesIO(data))


@pytest.mark.parametrize("data", [b"sku,name\r\n", b"sku", b"\r\nsku,name\r\n\r\n"])
def test_a_header_without_rows_is_a_file_with_zero_rows(data: bytes) -> None:
    header, items = read(data)
    assert "sku" in header.columns
    assert items == []


def test_a_stream_that_was_already_read_is_read_from_its_start() -> None:
    # Given an upload that was hashed first, leaving the position at the end
    stream = io.BytesIO(b"sku\nA\n")
    stream.read()
    # When parsed
    _header, items = open_catalog_csv(stream)
    # Then it is read from its first byte
    assert [row.sku for row in items] == ["A"]


def test_a_text_stream_is_refused() -> None:
    with pytest.raises(TypeError, match="binary mode"):
        open_catalog_csv(io.StringIO("sku\nA\n"))  # type: ignore[arg-type]


def test_a_line_without_end_is_refused_beyond_the_limit() -> None:
    # Given a file whose second line is longer than the line limit
    _header, items = open_catalog_csv(io.BytesIO(b"sku\n" + b"A" * (MAX_LINE_BYTES + 10)))
    # Then reading it stops with a run error instead of growing without bound
    with pytest.raises(CsvFormatError, match="line 2 is longer than"):
        list(items)


# --------------------------------------------------------------------------- streaming


def test_memory_stays_bounded_for_any_row_count() -> None:
    # Given a stream producing 200,000 rows (about 16 MB) on demand
    rows = 200_000
    stream = GeneratedCsv(rows)
    # When every row is read and validated, counting but not keeping them
    tracemalloc.start()
    try:
        header, items = open_catalog_csv(stream)  # type: ignore[arg-type]
        valid = 0
        last_line = 0
        for item in items:
            assert isinstance(item, CatalogRow)
            valid += 1
            last_line = item.line
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then all rows came through, and the peak stays far below the file's size
    assert valid == rows
    assert last_line == rows + 1
    assert "sku" in header.columns
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes"


# --------------------------------------------------------------------------- batches


def test_batches_cover_every_record_once_and_reread_the_same_rows() -> None:
    # Given a file with multi-line records, blank lines and errors
    everything = rows_of(MULTILINE)
    # When it is planned in batches of two records
    _header, planned = plan_batches(io.BytesIO(MULTILINE), batch_size=2)
    spans = list(planned)
    # Then the spans cover all records in order...
    assert [(s.first_line, s.last_line, s.count) for s in spans] == [
        (2, 5, 2),
        (6, 10, 2),
        (11, 11, 1),
    ]
    assert sum(span.count for span in spans) == len(everything)
    # ...and re-reading each span on its own gives exactly the rows of a full read
    reread = [item for span in spans for item in iter_line_range(io.BytesIO(MULTILINE), span=span)]
    assert reread == everything


def test_retry_rereads_only_the_given_lines() -> None:
    # Given the failed rows of a run, by line
    stream = io.BytesIO(MULTILINE)
    # When only those lines are re-read, from the whole file or within one span
    picked = list(iter_line_range(stream, lines=[6, 11]))
    _header, planned = plan_batches(io.BytesIO(MULTILINE), batch_size=2)
    second_span = list(planned)[1]
    in_span = list(iter_line_range(io.BytesIO(MULTILINE), span=second_span, lines={10, 11}))
    # Then exactly those records come back, validated as before
    assert [(row.line, row.sku) for row in picked] == [(6, "C"), (11, "")]
    assert [(row.line, row.sku) for row in in_span] == [(10, "D")]
    assert list(iter_line_range(io.BytesIO(MULTILINE), lines=[])) == []


def test_a_changed_file_does_not_match_its_batch_plan() -> None:
    # Given a span planned on one file
    _header, planned = plan_batches(io.BytesIO(b"sku,name\nA,x\nB,y\n"), batch_size=10)
    [span] = list(planned)
    # When the span is read against a file whose records now end elsewhere
    changed = b'sku,name\nA,"x\nB",y\n'
    # Then reading fails instead of guessing
    with pytest.raises(CsvFormatError, match="does not match its batch plan"):
        list(iter_line_range(io.BytesIO(changed), span=span))


def test_a_span_cannot_start_inside_the_header() -> None:
    with pytest.raises(ValueError, match="inside the header"):
        iter_line_range(io.BytesIO(b"sku\nA\n"), span=RecordSpan(0, 1, 1, 1))


def test_planning_fails_on_a_file_that_cannot_be_decoded() -> None:
    # Given a file with a bad byte far down
    data = b"sku\n" + b"A\n" * 5000 + b"\xff\n"
    # When planned, the run fails before any batch would run
    _header, planned = plan_batches(io.BytesIO(data))
    with pytest.raises(CsvFormatError, match="line 5002"):
        list(planned)


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches(io.BytesIO(b"sku\n"), batch_size=0)


# --------------------------------------------------------------------------- error report


@pytest.mark.parametrize("cell", ["=1+1", "+49 30 1234", "-2", "@SUM(A1:A9)", "\tx", "\rx", "\0x"])
def test_cells_a_spreadsheet_would_run_are_neutralised(cell: str) -> None:
    assert neutralise_formula(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["SKU-1", "", "a=b", "'=1+1", " =1"])
def test_other_cells_are_left_alone(cell: str) -> None:
    assert neutralise_formula(cell) == cell


def test_the_error_report_is_csv_with_neutralised_cells() -> None:
    # Given row errors carrying formula-like text, a delimiter and a line break
    errors = [
        RowError(3, '=HYPERLINK("http://x")', "sku", INVALID_VALUE, "bad, really\nbad"),
        RowError(7, "B", "quantity", INVALID_VALUE, "-1 is negative"),
    ]
    out = io.StringIO(newline="")
    # When the report is written
    written = write_error_report(errors, out)
    # Then it reads back as the contract's columns with the dangerous cells defused
    assert written == 2
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [
        ["line", "sku", "column", "code", "message"],
        ["3", '\'=HYPERLINK("http://x")', "sku", "invalid_value", "bad, really\nbad"],
        ["7", "B", "quantity", "invalid_value", "'-1 is negative"],
    ]
    assert out.getvalue().startswith("line,sku,column,code,message\r\n")


def test_a_django_file_can_be_planned_and_reread() -> None:
    # Given the stored upload as the batch tasks get it: a Django File over bytes
    from django.core.files.base import ContentFile

    upload = ContentFile(MULTILINE, name="catalog.csv")
    # When it is planned and a later span re-read from the same object
    _header, planned = plan_batches(upload, batch_size=3)  # type: ignore[arg-type]
    spans = list(planned)
    reread = list(iter_line_range(upload, span=spans[1]))  # type: ignore[arg-type]
    # Then the span's rows come back as in a full read
    assert reread == rows_of(MULTILINE)[3:]
