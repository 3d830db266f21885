"""Read catalog CSV files (contract §4) as a stream of validated rows.

Pure Python on purpose: the import services, the batch tasks and the API all call this with
the stored upload, and it must stay testable without a database.

Invariants the callers rely on:
- Every non-blank data record yields exactly one item, a `CatalogRow` or a `RowError`, so
  `processed = succeeded + failed + skipped` can be counted from the items alone.
- The file is read in fixed-size chunks and decoded one physical line at a time: memory is
  bounded by the longest line (`MAX_LINE_BYTES`), never by the row count.
- `line` is the physical line on which a record starts (header = line 1), also after quoted
  fields that span several lines, so error reports point at what a spreadsheet shows.
- A problem that makes the whole file unusable raises `CsvFormatError`; everything that is
  wrong with one record becomes a `RowError` and reading goes on.
- The text of a `RowError`, a header warning or a `CsvFormatError` never holds NUL, so the
  callers can store it (PostgreSQL refuses NUL); NUL in a value that is read is a `RowError`.
"""

from __future__ import annotations

import codecs
import csv
import functools
import itertools
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import BinaryIO, NamedTuple, TextIO

from syncplatform.text import storable

__all__ = [
    "ACTIVE_FALSE",
    "ACTIVE_TRUE",
    "DEFAULT_BATCH_SIZE",
    "ERROR_REPORT_HEADER",
    "GROUP_ACTIVE",
    "GROUP_NAME",
    "GROUP_PRICE",
    "GROUP_STOCK",
    "GROUP_UPDATED_AT",
    "INVALID_VALUE",
    "MALFORMED_ROW",
    "MAX_LINE_BYTES",
    "MISSING_VALUE",
    "NAME_MAX_LENGTH",
    "PRICE_MAX_DECIMAL_PLACES",
    "PRICE_MAX_INTEGER_DIGITS",
    "QUANTITY_MAX",
    "SKU_MAX_LENGTH",
    "WAREHOUSE_MAX_LENGTH",
    "WRONG_WIDTH",
    "CatalogRow",
    "CsvFormatError",
    "CsvHeader",
    "RecordSpan",
    "RowError",
    "iter_error_report",
    "iter_line_range",
    "neutralise_formula",
    "open_catalog_csv",
    "plan_batches",
    "resolve_encoding",
    "write_error_report",
]

# Row error codes. They end up in error reports and the API, so they never change meaning.
MISSING_VALUE = "missing_value"  # a required value is empty (sku, or half of a column group)
INVALID_VALUE = "invalid_value"  # a value does not parse or is out of range
WRONG_WIDTH = "wrong_width"  # the record has a different number of fields than the header
MALFORMED_ROW = "malformed_row"  # broken RFC 4180 quoting; the record cannot be split

# Column groups (CsvHeader.groups): which optional facts the file carries.
GROUP_NAME = "name"
GROUP_PRICE = "price"  # price + currency
GROUP_STOCK = "stock"  # quantity + warehouse
GROUP_UPDATED_AT = "updated_at"
GROUP_ACTIVE = "active"

# Limits shared with the webhook schema (contract §2) and the catalog columns; repeated here,
# not imported, so that this module stays free of Django.
SKU_MAX_LENGTH = 64
WAREHOUSE_MAX_LENGTH = 32
NAME_MAX_LENGTH = 255
QUANTITY_MAX = 2_147_483_647  # PostgreSQL integer
PRICE_MAX_DECIMAL_PLACES = 4
PRICE_MAX_INTEGER_DIGITS = 15  # catalog Price.amount: max_digits=19, decimal_places=4

# The contract caps a batch at 1,000 rows: one transaction each.
DEFAULT_BATCH_SIZE = 1000

# A physical line longer than this is refused: bounds memory on files without line breaks.
MAX_LINE_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024

ACTIVE_TRUE = frozenset({"true", "1", "yes"})
ACTIVE_FALSE = frozenset({"false", "0", "no"})

ERROR_REPORT_HEADER = ("line", "sku", "column", "code", "message")

_DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

# (column, partner) pairs: a file must carry both or neither.
_PAIRED_COLUMNS = (("price", "currency"), ("quantity", "warehouse"))
_GROUP_OF_COLUMN = {
    "name": GROUP_NAME,
    "price": GROUP_PRICE,
    "currency": GROUP_PRICE,
    "quantity": GROUP_STOCK,
    "warehouse": GROUP_STOCK,
    "updated_at": GROUP_UPDATED_AT,
    "active": GROUP_ACTIVE,
}
_KNOWN_COLUMNS = frozenset({"sku", *_GROUP_OF_COLUMN})
# The order in which a row's optional cells are validated, and so which error a row reports.
_OPTIONAL_COLUMNS = ("name", "price", "currency", "quantity", "warehouse", "updated_at", "active")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Tab and line breaks are legitimate in a quoted product name; other controls are not, and
# PostgreSQL refuses NUL outright.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# Recognised only to explain the error: a local time without an offset is ambiguous.
_DATE_OR_LOCAL_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?"
)
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\0")


class CsvFormatError(Exception):
    """The file cannot be imported at all; the message is meant for the uploader."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        message = storable(message)  # it may quote header cells, and becomes the run's error
        super().__init__(message)
        self.message = message
        self.line = line


# NamedTuples, as the catalog's items (catalog.services): one or two are made per row.
class RowError(NamedTuple):
    """One data record that cannot be applied, as it appears in the error report."""

    line: int
    sku: str
    column: str
    code: str
    message: str


class CatalogRow(NamedTuple):
    """One valid data record. `None` means the file does not give that value."""

    line: int
    sku: str
    name: str | None
    price: Decimal | None
    currency: str | None
    quantity: int | None
    warehouse: str | None
    updated_at: datetime | None  # tz-aware; None: the caller uses the run's creation time
    active: bool | None


@dataclass
class CsvHeader:
    """What the header row says about the file."""

    columns: list[str]  # normalised names (trimmed, lower-case) in file order, unknown included
    delimiter: str
    warnings: list[str]
    groups: set[str]  # GROUP_* constants present in the file
    encoding: str = "utf-8"  # the encoding actually used (a UTF-8 BOM wins over the argument)


@dataclass(frozen=True)
class RecordSpan:
    """A run of consecutive data records that a batch re-reads without scanning the file.

    Plain integers, so a batch row can store it and `iter_line_range` can seek straight to it.
    """

    offset: int  # byte offset of the first record in the file
    first_line: int  # line on which the first record starts
    last_line: int  # line on which the last record starts
    count: int  # data records in the span (blank lines are not records)


# --------------------------------------------------------------------------- public API


def open_catalog_csv(
    stream: BinaryIO, *, encoding: str | None = None
) -> tuple[CsvHeader, Iterator[CatalogRow | RowError]]:
    """Read the header now and return it with a lazy iterator over all data records.

    Header problems raise `CsvFormatError` here; a decoding problem further down raises it
    from the iterator, on the first line that cannot be decoded. A seekable stream is read
    from its start.
    """
    source = _LineSource(stream, encoding)
    header, layout = _read_header(source)
    return header, _validate_all(layout, _records(source, layout))


def plan_batches(
    stream: BinaryIO, *, encoding: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[CsvHeader, Iterator[RecordSpan]]:
    """Split the file into spans of at most `batch_size` records, in one streaming pass.

    Records are split but not validated, which keeps the pass cheap; the sum of the counts is
    the run's total row count. A file that cannot be decoded fails here, before any batch ran.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    source = _LineSource(stream, encoding)
    header, layout = _read_header(source)
    return header, _spans(_records(source, layout), batch_size)


def iter_line_range(
    stream: BinaryIO,
    *,
    encoding: str | None = None,
    span: RecordSpan | None = None,
    lines: Collection[int] | None = None,
) -> Iterator[CatalogRow | RowError]:
    """Re-read part of a file: the records of `span`, and/or those starting on `lines`.

    - `span` (from `plan_batches`): seek to it and read exactly its records; needs a seekable
      stream. If the file no longer matches the span, `CsvFormatError` is raised.
    - `lines`: yield only records whose first line is listed (retrying failed rows); without
      a span the file is read from the top and reading stops after the last wanted line.
    The header is read and checked again first, and raises here rather than when iterating.
    """
    source = _LineSource(stream, encoding)
    _header, layout = _read_header(source)
    wanted = frozenset(lines) if lines is not None else None
    if span is not None:
        if span.offset < source.offset or span.first_line <= source.line:
            raise ValueError(f"{span} starts inside the header")
        source.seek(span.offset, span.first_line)
        records: Iterator[_Record] = _records_of_span(_records(source, layout), span)
    else:
        records = _records(source, layout)
    if wanted is not None:
        if not wanted:
            return iter(())
        last_wanted = max(wanted)
        records = (
            record
            for record in itertools.takewhile(lambda r: r.line <= last_wanted, records)
            if record.line in wanted
        )
    return _validate_all(layout, records)


def resolve_encoding(encoding: str | None) -> str:
    """Return the codec `encoding` names; raise `CsvFormatError` if it is unknown or unusable.

    Lets an upload with a bad `encoding` be refused at once instead of failing in a worker.
    """
    return _resolve_encoding(encoding)


def neutralise_formula(cell: str) -> str:
    """Prefix an apostrophe to a cell a spreadsheet would run as a formula (OWASP CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_PREFIXES) else cell


def iter_error_report(rows: Iterable[RowError]) -> Iterator[str]:
    """Yield the error report as CSV text, one record per string (for streaming responses)."""
    writer = csv.writer(_Echo(), lineterminator="\r\n")
    yield writer.writerow(ERROR_REPORT_HEADER)
    for row in rows:
        yield writer.writerow(
            (
                row.line,
                neutralise_formula(row.sku),
                neutralise_formula(row.column),
                neutralise_formula(row.code),
                neutralise_formula(row.message),
            )
        )


def write_error_report(rows: Iterable[RowError], out: TextIO) -> int:
    """Write `line,sku,column,code,message` with formula cells neutralised; return the row count.

    `out` should be opened with newline='' so the CRLF record ends stay as written.
    """
    written = -1  # the header is not a row
    for text in iter_error_report(rows):
        out.write(text)
        written += 1
    return written


# --------------------------------------------------------------------------- reading lines


class _LineSource:
    """Physical lines of a binary stream, decoded one at a time, with their byte offsets.

    Lines end at CRLF, CR or LF, exactly where the csv module (newline='') expects them, and
    each is decoded on its own: a decoding error names its line, and offsets stay exact so a
    batch can seek back to a record. This is sound for ASCII-compatible encodings only, in
    which the bytes CR and LF never occur inside a multi-byte character; others are refused.
    """

    def __init__(self, stream: BinaryIO, encoding: str | None) -> None:
        self._stream = stream
        self.requested_encoding = encoding
        self.encoding = _resolve_encoding(encoding)
        self.overridden_encoding: str | None = None  # set when a UTF-8 BOM beat `encoding`
        self.offset = 0  # byte offset of the next line to hand out
        self.line = 0  # number of the last line handed out
        self._seekable = bool(getattr(stream, "seekable", lambda: False)())
        if self._seekable:
            stream.seek(0)
        self._raw = self._raw_lines()

    def seek(self, offset: int, line: int) -> None:
        """Continue at byte `offset`, which is the start of physical line `line`."""
        if not self._seekable:
            raise ValueError("reading a span needs a seekable stream")
        self._stream.seek(offset)
        self.offset = offset
        self.line = line - 1
        self._raw = self._raw_lines()

    def __iter__(self) -> _LineSource:
        return self

    def __next__(self) -> str:
        raw = next(self._raw)
        number = self.line + 1
        payload = raw
        if self.offset == 0:
            payload = self._strip_bom(raw)
        try:
            text = payload.decode(self.encoding)
        except UnicodeDecodeError as error:
            message = self._decode_message(number, payload, error)
            raise CsvFormatError(message, line=number) from None
        self.line = number
        self.offset += len(raw)
        return text

    def _strip_bom(self, raw: bytes) -> bytes:
        if raw.startswith(_UTF16_BOMS):
            raise CsvFormatError(
                "the file is UTF-16 (or UTF-32) encoded; save it as 'CSV UTF-8' and upload again",
                line=1,
            )
        if raw.startswith(_UTF8_BOM):
            # The byte order mark is the file's own statement of its encoding.
            if self.encoding != "utf-8":
                self.overridden_encoding = self.requested_encoding
            self.encoding = "utf-8"
            return raw[len(_UTF8_BOM) :]
        return raw

    def _decode_message(self, number: int, raw: bytes, error: UnicodeDecodeError) -> str:
        bad = raw[error.start : error.start + 1].hex()
        column = len(raw[: error.start].decode(self.encoding, errors="replace")) + 1
        message = (
            f"line {number}, character {column}: byte 0x{bad} cannot be decoded as {self.encoding}"
        )
        if self.requested_encoding is None:
            message += "; save the file as 'CSV UTF-8' or give its encoding (e.g. cp1252)"
        return message

    def _raw_lines(self) -> Iterator[bytes]:
        buffer = b""
        while True:
            chunk = self._stream.read(_CHUNK_BYTES)
            if isinstance(chunk, str):
                raise TypeError("open the CSV file in binary mode ('rb')")
            if not chunk:
                if buffer:
                    yield buffer
                return
            buffer += chunk
            # bytes.splitlines ends lines at exactly CRLF, CR and LF. The last piece waits for
            # the next chunk: it has no line end yet, or ends in a CR whose LF may follow.
            lines = buffer.splitlines(keepends=True)
            buffer = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
            yield from lines
            if len(buffer) > MAX_LINE_BYTES:
                raise CsvFormatError(
                    f"line {self.line + 1} is longer than {MAX_LINE_BYTES} bytes; "
                    "is this a CSV file?",
                    line=self.line + 1,
                )


_MISREADING_CODECS = frozenset(
    {"utf-7", "raw-unicode-escape", "unicode-escape", "idna", "punycode"}
)


def _resolve_encoding(encoding: str | None) -> str:
    if encoding is None:
        return "utf-8"
    try:
        name = codecs.lookup(encoding).name
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        raise CsvFormatError(f"unknown encoding {encoding!r}") from None
    if name == "utf-8-sig":
        return "utf-8"  # the BOM is stripped for every encoding anyway
    probe = 'sku,;\t"\r\n'
    try:
        compatible = probe.encode(name) == probe.encode("ascii")
    except (LookupError, UnicodeError):
        compatible = False
    # These read ASCII text as something else: utf-7 treats "+", raw-unicode-escape "\\u".
    compatible = compatible and name not in _MISREADING_CODECS
    if not compatible:
        raise CsvFormatError(
            f"encoding {encoding!r} is not supported; save the file as 'CSV UTF-8' "
            "or in a single-byte encoding such as cp1252"
        )
    return name


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class _Layout:
    width: int
    index: dict[str, int]  # known column -> field position
    delimiter: str
    positions: tuple[int | None, ...]  # field positions of _OPTIONAL_COLUMNS, None if absent

    @property
    def decimal_comma(self) -> bool:
        # Only where the comma cannot be the delimiter: the European spreadsheet export.
        return self.delimiter == ";"


class _Record(NamedTuple):  # a tuple: one is made per record, in the hottest loop
    line: int
    offset: int
    fields: list[str] | None  # None: the record could not be split
    problem: str = ""


def _read_header(source: _LineSource) -> tuple[CsvHeader, _Layout]:
    for text in source:
        if text.strip():
            first_line = text
            break
    else:
        raise CsvFormatError("the file is empty; it needs a header row with at least 'sku'")
    header_line = source.line
    delimiter = _detect_delimiter(first_line, header_line)
    try:
        names = next(_csv_reader(itertools.chain([first_line], source), delimiter))
    except csv.Error as error:
        raise CsvFormatError(
            f"the header row (line {header_line}) is not valid CSV: {error}", line=header_line
        ) from None

    columns = [name.strip().lower() for name in names]
    warnings: list[str] = []
    index: dict[str, int] = {}
    for position, name in enumerate(columns):
        if name in _KNOWN_COLUMNS:
            if name in index:
                raise CsvFormatError(
                    f"column '{name}' appears twice (columns {index[name] + 1} and {position + 1})",
                    line=header_line,
                )
            index[name] = position
        elif not name:
            warnings.append(f"column {position + 1} has no name and is ignored")
        else:
            warnings.append(storable(f"unknown column '{names[position].strip()}' is ignored"))

    if "sku" not in index:
        found = ", ".join(f"'{name}'" for name in columns)
        raise CsvFormatError(
            f"the header has no 'sku' column (found {found}); columns are separated by "
            "a comma, a semicolon or a tab",
            line=header_line,
        )
    for column, partner in _PAIRED_COLUMNS:
        for present, missing in ((column, partner), (partner, column)):
            if present in index and missing not in index:
                raise CsvFormatError(
                    f"column '{present}' needs '{missing}'; give both or neither",
                    line=header_line,
                )

    header = CsvHeader(
        columns=columns,
        delimiter=delimiter,
        warnings=warnings,
        groups={_GROUP_OF_COLUMN[name] for name in index if name != "sku"},
        encoding=source.encoding,
    )
    if source.overridden_encoding is not None:
        header.warnings.append(
            "the file starts with a UTF-8 byte order mark, so it was read as UTF-8, "
            f"not {source.overridden_encoding}"
        )
    positions = tuple(index.get(column) for column in _OPTIONAL_COLUMNS)
    return header, _Layout(len(columns), index, delimiter, positions)


def _detect_delimiter(line: str, number: int) -> str:
    """Pick the delimiter that occurs most often outside quotes in the header line."""
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts.values())
    if best == 0:
        return ","  # a single-column file: just 'sku'
    winners = [char for char, count in counts.items() if count == best]
    if len(winners) > 1:
        names = " and ".join(_DELIMITER_NAMES[char] for char in winners)
        raise CsvFormatError(
            f"cannot tell the delimiter: the header line has as many {names} characters",
            line=number,
        )
    return winners[0]


def _csv_reader(lines: Iterable[str], delimiter: str) -> Iterator[list[str]]:
    # strict: broken quoting becomes a row error instead of silently merged or split fields.
    return csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True, strict=True)


def _records(source: _LineSource, layout: _Layout) -> Iterator[_Record]:
    """Yield the non-blank data records with the line and byte offset where each starts."""
    reader = _csv_reader(source, layout.delimiter)
    while True:
        line, offset = source.line + 1, source.offset
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield _Record(line, offset, None, _quoting_problem(error, line, source.line))
            continue
        if "".join(fields).strip():  # some field is not blank
            yield _Record(line, offset, fields)
        # else: a blank line, or only delimiters (spreadsheets export empty rows so)


def _quoting_problem(error: csv.Error, line: int, last_line: int) -> str:
    text = str(error)
    where = f"line {line}" if last_line <= line else f"lines {line}-{last_line}"
    if "unexpected end of data" in text:
        return f"a quote in the record on line {line} is never closed ({where} skipped)"
    if "expected after" in text:
        return f'{where}: text after a closing quote; write a quote inside a quoted field as ""'
    if "field larger than field limit" in text:
        return f"{where}: a field is too long; is a quote left open?"
    return f"{where}: {text}"


def _records_of_span(records: Iterator[_Record], span: RecordSpan) -> Iterator[_Record]:
    count, last_line = 0, 0
    for record in itertools.islice(records, span.count):
        count, last_line = count + 1, record.line
        yield record
    # Record boundaries are a property of the bytes: a changed file shows up right here.
    if count != span.count or last_line != span.last_line:
        raise CsvFormatError(
            f"the file does not match its batch plan (records {span.first_line}-"
            f"{span.last_line}); was it changed after upload?"
        )


def _spans(records: Iterator[_Record], size: int) -> Iterator[RecordSpan]:
    first: _Record | None = None
    count = 0
    last_line = 0
    for record in records:
        if first is None:
            first = record
        count += 1
        last_line = record.line
        if count == size:
            yield RecordSpan(first.offset, first.line, last_line, count)
            first, count = None, 0
    if first is not None:
        yield RecordSpan(first.offset, first.line, last_line, count)


# --------------------------------------------------------------------------- validation


class _CellError(Exception):
    def __init__(self, column: str, code: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.code = code
        self.message = message


def _validate_all(layout: _Layout, records: Iterable[_Record]) -> Iterator[CatalogRow | RowError]:
    for record in records:
        yield _validate(layout, record)


def _validate(layout: _Layout, record: _Record) -> CatalogRow | RowError:
    fields = record.fields
    if fields is None:
        return _row_error(record.line, "", "", MALFORMED_ROW, record.problem)
    sku_position = layout.index["sku"]
    raw_sku = fields[sku_position].strip() if sku_position < len(fields) else ""
    if len(fields) != layout.width:
        return _row_error(
            record.line,
            raw_sku,
            "",
            WRONG_WIDTH,
            f"the row has {len(fields)} fields but the header has {layout.width}",
        )

    name_text, price_text, currency_text, quantity_text, warehouse, updated_text, active_text = [
        "" if position is None else fields[position].strip() for position in layout.positions
    ]
    try:
        sku = _parse_sku(raw_sku)
        name = _parse_name(name_text)
        _pair(price_text, "price", currency_text, "currency")
        price = _parse_price(price_text, layout.decimal_comma) if price_text else None
        currency = _parse_currency(currency_text) if currency_text else None
        _pair(quantity_text, "quantity", warehouse, "warehouse")
        quantity = _parse_quantity(quantity_text) if quantity_text else None
        if warehouse:
            _check_text("warehouse", warehouse, WAREHOUSE_MAX_LENGTH, _CONTROL)
        updated_at = _parse_updated_at(updated_text)
        active = _parse_active(active_text)
    except _CellError as error:
        return _row_error(record.line, raw_sku, error.column, error.code, error.message)
    return CatalogRow(
        line=record.line,
        sku=sku,
        name=name,
        price=price,
        currency=currency,
        quantity=quantity,
        warehouse=warehouse or None,
        updated_at=updated_at,
        active=active,
    )


def _row_error(line: int, raw_sku: str, column: str, code: str, message: str) -> RowError:
    """A RowError whose text can be stored as it is (see `syncplatform.text.storable`)."""
    return RowError(line, _sku_for_report(raw_sku), storable(column), code, storable(message))


def _sku_for_report(sku: str) -> str:
    # The report's sku column holds at most SKU_MAX_LENGTH characters, like the catalog.
    sku = storable(sku)
    return sku if len(sku) <= SKU_MAX_LENGTH else sku[: SKU_MAX_LENGTH - 1] + "…"


def _pair(first: str, first_column: str, second: str, second_column: str) -> None:
    """Both halves of a group or neither: half a price or half a stock level means nothing."""
    if first and not second:
        raise _CellError(
            second_column, MISSING_VALUE, f"{second_column} is empty but {first_column} is given"
        )
    if second and not first:
        raise _CellError(
            first_column, MISSING_VALUE, f"{first_column} is empty but {second_column} is given"
        )


def _check_text(column: str, value: str, max_length: int, forbidden: re.Pattern[str]) -> None:
    if len(value) > max_length:
        raise _CellError(column, INVALID_VALUE, f"{column} is longer than {max_length} characters")
    if forbidden.search(value):
        raise _CellError(column, INVALID_VALUE, f"{column} contains control characters")


def _parse_sku(value: str) -> str:
    if not value:
        raise _CellError("sku", MISSING_VALUE, "sku is empty")
    _check_text("sku", value, SKU_MAX_LENGTH, _CONTROL)
    return value


def _parse_name(value: str) -> str | None:
    if not value:
        return None
    _check_text("name", value, NAME_MAX_LENGTH, _CONTROL_IN_TEXT)
    return value


def _parse_price(value: str, decimal_comma: bool) -> Decimal:
    text = value
    if decimal_comma and "," in text and "." not in text:
        text = text.replace(",", ".", 1)
    if not _DECIMAL.fullmatch(text):
        hint = "" if decimal_comma else " (use a decimal point)"
        raise _CellError("price", INVALID_VALUE, f"price {value!r} is not a decimal number{hint}")
    amount = Decimal(text)
    if amount < 0:
        raise _CellError("price", INVALID_VALUE, f"price {value!r} is negative")
    whole, _, fraction = text.lstrip("-").partition(".")
    if len(fraction.rstrip("0")) > PRICE_MAX_DECIMAL_PLACES:
        raise _CellError(
            "price",
            INVALID_VALUE,
            f"price {value!r} has more than {PRICE_MAX_DECIMAL_PLACES} decimal places",
        )
    if len(whole.lstrip("0")) > PRICE_MAX_INTEGER_DIGITS:
        raise _CellError("price", INVALID_VALUE, f"price {value!r} is too large")
    return amount.copy_abs()  # turns "-0" into 0


def _parse_currency(value: str) -> str:
    if not _CURRENCY.fullmatch(value):
        hint = " (use upper case)" if _CURRENCY.fullmatch(value.upper()) else ""
        raise _CellError(
            "currency",
            INVALID_VALUE,
            f"currency {value!r} is not an ISO 4217 code like 'EUR'{hint}",
        )
    return value


def _parse_quantity(value: str) -> int:
    if not _DIGITS.fullmatch(value):
        if value.startswith("-") and _DIGITS.fullmatch(value[1:]):
            message = f"quantity {value!r} is negative"
        else:
            message = f"quantity {value!r} is not a whole number"
        raise _CellError("quantity", INVALID_VALUE, message)
    digits = value.lstrip("0") or "0"
    # Length first: int() of a huge digit string is slow and may be refused outright.
    if len(digits) > len(str(QUANTITY_MAX)) or int(digits) > QUANTITY_MAX:
        raise _CellError("quantity", INVALID_VALUE, f"quantity {value!r} exceeds {QUANTITY_MAX}")
    return int(digits)


def _parse_updated_at(value: str) -> datetime | None:
    if not value:
        return None
    # Long values cannot be valid, and are kept out of the cache (memory stays bounded).
    parsed = _timestamp(value) if len(value) <= 64 else None
    if parsed is not None:
        return parsed
    if not _RFC3339.fullmatch(value):
        if _DATE_OR_LOCAL_TIME.fullmatch(value):
            message = (
                f"updated_at {value!r} has no UTC offset; "
                "write e.g. 2026-11-22T09:59:58Z or 2026-11-22T10:59:58+01:00"
            )
        else:
            message = f"updated_at {value!r} is not an RFC 3339 date and time"
        raise _CellError("updated_at", INVALID_VALUE, message)
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise _CellError(
            "updated_at", INVALID_VALUE, f"updated_at {value!r} is not a valid date and time"
        ) from None


@functools.lru_cache(maxsize=4096)
def _timestamp(value: str) -> datetime | None:
    """A valid RFC 3339 value as a datetime, else None. Cached: exports often stamp many
    rows alike, and datetimes are immutable."""
    if not _RFC3339.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return None


def _parse_active(value: str) -> bool | None:
    if not value:
        return None
    folded = value.lower()
    if folded in ACTIVE_TRUE:
        return True
    if folded in ACTIVE_FALSE:
        return False
    raise _CellError(
        "active", INVALID_VALUE, f"active {value!r} is not one of true/false, 1/0, yes/no"
    )


class _Echo:
    """A write target that hands back what it is given, so csv.writer can feed a generator."""

    def write(self, value: str) -> str:
        return value
