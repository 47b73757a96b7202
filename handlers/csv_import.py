"""Reading a bulk-enrollment CSV file into contacts, batch by batch.

Files come from admins' spreadsheets: UTF-8 with or without a BOM, comma, semicolon or tab
separated, headers in any case. The reader streams (a million-row file never sits in memory)
and is lenient per row: a row it cannot use becomes a `RowProblem` beside the good ones, so one
bad row never blocks the rest. Only a problem with the file as a whole raises `CsvError`.

Line numbers are physical file lines with the header on line 1 (blank lines before it count,
as an editor shows them). A row whose quoted field spans several lines is numbered by the line
where it starts, in `ContactInput.line` as in `RowProblem.line`.

Because the reader streams, a whole-file problem found late (a byte that is not UTF-8, one row
too many) raises after earlier batches have been handed out; the consumer must treat the
import as one unit. Size caps are checked before anything is read where the size is known
(`read_contacts_from_path`, `read_contacts_from_bytes`).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final, Protocol, runtime_checkable

from scheduler.enrollment import ContactInput

if TYPE_CHECKING:
    from _csv import Reader

    from _typeshed import WriteableBuffer

#: the columns with a meaning of their own; every other column is a custom field
KNOWN_COLUMNS: Final = ("phone", "name", "first_name", "email", "company", "timezone")
#: candidates for the separator, in order of preference when the header is ambiguous
DELIMITERS: Final = (",", ";", "\t")

_READ_SIZE: Final = 64 * 1024
_HEAD_SIZE: Final = 4
_PHONE_CHARS: Final = frozenset("0123456789+-()./ ")
#: leading bytes of the files people send by mistake, with what to tell them
_SIGNATURES: Final = (
    (b"PK\x03\x04", "an Excel workbook or another zip archive, not CSV; save it as CSV UTF-8"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls), not CSV; save it as CSV UTF-8"),
    (b"%PDF", "a PDF document, not CSV"),
    (b"\xff\xfe", "UTF-16 text; save it as CSV UTF-8"),
    (b"\xfe\xff", "UTF-16 text; save it as CSV UTF-8"),
)


class CsvError(ValueError):
    """The file as a whole cannot be imported; the message is one line an admin can act on."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row that cannot become a contact; reported, then skipped."""

    line: int
    reason: str
    raw_phone: str | None


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each column sits in a row. A column absent from the header points one past the
    last field, where every padded row holds an empty string, so the hot loop never branches
    on which columns exist."""

    width: int
    phone: int
    name: int
    first_name: int
    email: int
    company: int
    timezone: int
    custom: tuple[tuple[int, str], ...]
    #: the known columns present: their values never hold a line break
    single_line: tuple[int, ...]


def read_contacts(
    stream: BinaryIO | Iterable[bytes],
    *,
    max_rows: int,
    max_bytes: int | None = None,
    batch_size: int = 5000,
) -> Iterator[list[ContactInput | RowProblem]]:
    """Yield the file's rows in lists of at most `batch_size`, in file order.

    Blank rows (no field with a value) are skipped silently and count toward nothing.
    `max_rows` counts every other data row, good or bad. `stream` is read, never closed.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    source = _ByteSource(stream, max_bytes)
    text = io.TextIOWrapper(io.BufferedReader(source, _READ_SIZE), encoding="utf-8-sig", newline="")
    lines_before = 0  # physical lines consumed before the csv reader's first line
    reader: Reader | None = None
    try:
        header_line = ""
        for header_line in text:
            if header_line.strip():
                break
            lines_before += 1
        else:
            raise CsvError("the file is empty")
        delimiter = sniff_delimiter(header_line)
        reader = csv.reader(
            itertools.chain((header_line,), text), delimiter=delimiter, skipinitialspace=True
        )
        try:
            header = next(reader)
        except csv.Error as err:
            raise CsvError(f"line {lines_before + 1}: {err}; is a quote left open?") from err
        layout = _layout(header)
        yield from _batches(reader, layout, lines_before, max_rows, batch_size)
    except UnicodeDecodeError as err:
        done = lines_before + (reader.line_num if reader is not None else 0)
        line = done + 1 + _line_breaks(err.object[: err.start])
        byte = err.object[err.start]
        raise CsvError(
            f"line {line} is not UTF-8 (byte 0x{byte:02x}); save the file as CSV UTF-8"
        ) from err
    finally:
        text.close()


def read_contacts_from_path(
    path: str | os.PathLike[str],
    *,
    max_rows: int,
    max_bytes: int | None = None,
    batch_size: int = 5000,
) -> Iterator[list[ContactInput | RowProblem]]:
    """`read_contacts` on a file, refusing an oversized one before reading a byte.

    The file is opened on the first `next()` and closed when the iterator is exhausted or
    closed.
    """
    try:
        size = os.stat(path).st_size
    except OSError as err:
        raise CsvError(f"cannot read {os.fspath(path)}: {err.strerror}") from err
    _check_size(size, max_bytes)
    return _read_path(path, max_rows=max_rows, max_bytes=max_bytes, batch_size=batch_size)


def read_contacts_from_bytes(
    data: bytes,
    *,
    max_rows: int,
    max_bytes: int | None = None,
    batch_size: int = 5000,
) -> Iterator[list[ContactInput | RowProblem]]:
    """`read_contacts` on an upload already in memory, refusing an oversized one at once."""
    _check_size(len(data), max_bytes)
    return read_contacts(
        io.BytesIO(data), max_rows=max_rows, max_bytes=max_bytes, batch_size=batch_size
    )


def sniff_delimiter(header_line: str) -> str:
    """The separator that occurs most often outside quotes in the header (comma on a tie or
    when none occurs: a one-column file)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=counts.__getitem__)
    return best if counts[best] else ","


def normalize_column(name: str) -> str:
    """Header names are matched loosely: case, BOMs and surrounding or repeated spaces do not
    matter, and inner spaces become underscores ("First Name" is `first_name`)."""
    return "_".join(name.replace("\ufeff", "").split()).lower()


def _read_path(
    path: str | os.PathLike[str], *, max_rows: int, max_bytes: int | None, batch_size: int
) -> Iterator[list[ContactInput | RowProblem]]:
    try:
        with open(path, "rb") as stream:
            yield from read_contacts(
                stream, max_rows=max_rows, max_bytes=max_bytes, batch_size=batch_size
            )
    except OSError as err:
        raise CsvError(f"cannot read {os.fspath(path)}: {err.strerror}") from err


def _batches(
    reader: Reader,
    layout: _Layout,
    lines_before: int,
    max_rows: int,
    batch_size: int,
) -> Iterator[list[ContactInput | RowProblem]]:
    """The hot loop: a million rows pass through here, so it inlines what it can."""
    width = layout.width
    padded = width + 1
    phone_at, name_at, first_at = layout.phone, layout.name, layout.first_name
    email_at, company_at, zone_at = layout.email, layout.company, layout.timezone
    custom, single_line = layout.custom, layout.single_line
    fill = [[""] * (padded - size) for size in range(padded)]
    rows = 0
    last = lines_before + reader.line_num
    batch: list[ContactInput | RowProblem] = []
    item: ContactInput | RowProblem
    try:
        for row in reader:
            line = last + 1
            last = lines_before + reader.line_num
            size = len(row)
            if size == width:
                row.append("")
            elif not size:
                continue
            elif size < width:
                row += fill[size]
            phone = row[phone_at].strip()
            if size > width and any(value.strip() for value in row[width:]):
                reason = f"line has {size} fields, header has {width}"
                item = RowProblem(line, reason, phone or None)
            elif last != line and _breaks_line(row, single_line):
                reason = (
                    f"a quoted value runs from line {line} to line {last}; is a quote left open?"
                )
                item = RowProblem(line, reason, phone or None)
            elif phone:
                extra: dict[str, str] = {}
                for at, key in custom:
                    if value := row[at].strip():
                        extra[key] = value
                # positional: keywords cost a tenth of the reader's time; tests pin every field
                item = ContactInput(
                    phone,
                    row[name_at].strip() or None,
                    row[first_at].strip() or None,
                    row[email_at].strip() or None,
                    row[company_at].strip() or None,
                    row[zone_at].strip() or None,
                    extra,
                    line,
                )
            elif any(value.strip() for value in row):
                item = RowProblem(line, "empty phone", None)
            else:
                continue
            rows += 1
            if rows > max_rows:
                raise CsvError(f"more than {max_rows:,} rows (line {line}); split the file")
            batch.append(item)
            if len(batch) >= batch_size:
                yield batch
                batch = []
    except csv.Error as err:  # a quote left open swallows the lines after it
        raise CsvError(f"line {last + 1}: {err}; is a quote left open?") from err
    if batch:
        yield batch


def _layout(header: list[str]) -> _Layout:
    names = [normalize_column(cell) for cell in header]
    seen: dict[str, int] = {}
    for at, name in enumerate(names):
        if not name:
            continue  # a trailing separator; its values are ignored
        if name in seen:
            raise CsvError(f"column {name!r} appears twice (columns {seen[name] + 1} and {at + 1})")
        seen[name] = at
    if "phone" not in seen:
        found = [cell.replace("\ufeff", "").strip() for cell in header]
        written = ", ".join(cell for cell in found if cell) or "none"
        if any(_looks_like_phone(cell) for cell in found):
            raise CsvError(
                "the first line must name the columns (phone, name, ...) but it holds data: "
                f"{written}"
            )
        raise CsvError(f"no 'phone' column; columns found: {written}")
    width = len(names)
    custom = tuple((at, name) for name, at in seen.items() if name not in KNOWN_COLUMNS)
    return _Layout(
        width,
        seen["phone"],
        seen.get("name", width),
        seen.get("first_name", width),
        seen.get("email", width),
        seen.get("company", width),
        seen.get("timezone", width),
        custom,
        tuple(at for name, at in seen.items() if name in KNOWN_COLUMNS),
    )


def _breaks_line(row: list[str], columns: tuple[int, ...]) -> bool:
    """Numbers, names, e-mail addresses, companies and zones fit on one line; a line break in
    one means a quote was left open and swallowed the rows after it, which must not pass for
    one contact. Custom fields (notes, postal addresses) may span lines."""
    return any("\n" in row[at] or "\r" in row[at] for at in columns)


def _looks_like_phone(cell: str) -> bool:
    return sum(char.isdigit() for char in cell) >= 6 and set(cell) <= _PHONE_CHARS


def _line_breaks(data: bytes) -> int:
    """Line ends as the text layer counts them: CRLF, lone CR and lone LF are one each."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def _check_size(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise CsvError(f"the file is over the {_human_size(max_bytes)} limit")


def _human_size(size: int) -> str:
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


@runtime_checkable
class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _ByteSource(io.RawIOBase):
    """Every byte passes here on its way to the decoder, whatever delivered it (an open file,
    an upload stream, an iterator of chunks), so the size cap and the binary check hold for
    all of them without reading ahead."""

    def __init__(self, source: BinaryIO | Iterable[bytes], max_bytes: int | None) -> None:
        super().__init__()
        self._stream: _Readable | None = None
        self._chunks: Iterator[bytes] | None = None
        if isinstance(source, _Readable):
            self._stream = source
        else:
            self._chunks = iter(source)
        self._chunk = b""
        self._offset = 0
        self._max_bytes = max_bytes
        self._total = 0
        self._head = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._take(len(view))
        if data:
            self._screen(data)
        view[: len(data)] = data
        return len(data)

    def _take(self, size: int) -> bytes:
        if self._stream is not None:
            return self._stream.read(size)
        assert self._chunks is not None
        while self._offset >= len(self._chunk):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._chunk, self._offset = bytes(chunk), 0
        data = self._chunk[self._offset : self._offset + size]
        self._offset += len(data)
        return data

    def _screen(self, data: bytes) -> None:
        if len(self._head) < _HEAD_SIZE:
            self._head += data[: _HEAD_SIZE - len(self._head)]
            for signature, what in _SIGNATURES:
                if self._head.startswith(signature):
                    raise CsvError(f"this file is {what}")
        self._total += len(data)
        if self._max_bytes is not None and self._total > self._max_bytes:
            raise CsvError(f"the file is over the {_human_size(self._max_bytes)} limit")
        if b"\x00" in data:
            raise CsvError("this is a binary file, not CSV text")
