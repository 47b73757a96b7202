"""The bulk-enrollment CSV reader on real files: separators, encodings, quoting, bad rows,
whole-file errors, caps, batching and streaming memory."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.csv_gen import write_csv
from handlers.csv_import import (
    CsvError,
    RowProblem,
    normalize_column,
    read_contacts,
    read_contacts_from_bytes,
    read_contacts_from_path,
    sniff_delimiter,
)
from scheduler.enrollment import ContactInput

DATA = Path(__file__).parent.parent / "data" / "csv"

Row = ContactInput | RowProblem


def rows_of(batches: Iterator[list[Row]]) -> list[Row]:
    return [row for batch in batches for row in batch]


def read_file(name: str, **caps: int) -> list[Row]:
    return rows_of(read_contacts_from_path(DATA / name, max_rows=caps.get("max_rows", 1000)))


def read_bytes(data: bytes, *, max_rows: int = 1000) -> list[Row]:
    return rows_of(read_contacts_from_bytes(data, max_rows=max_rows))


# --- the sample files --------------------------------------------------------------------


def test_sample_files_keep_their_bytes() -> None:
    """The samples are about exact bytes; a checkout that rewrote line ends would void them."""
    assert (DATA / "semicolon_bom.csv").read_bytes().startswith(b"\xef\xbb\xbf PHONE ;")
    assert b"\r\n" in (DATA / "semicolon_bom.csv").read_bytes()
    assert b"Jos\xe9\n" in (DATA / "latin1.csv").read_bytes()
    assert (DATA / "empty.csv").stat().st_size == 0


def test_comma_file_with_quotes_newlines_blank_lines_and_custom_columns() -> None:
    assert read_file("comma.csv") == [
        ContactInput(
            phone="+49 151 23456789",
            name="Jürgen Müller",
            first_name="Jürgen",
            email="juergen@example.de",
            company="Müller & Söhne, GmbH",
            timezone="Europe/Berlin",
            custom={"plan": "pro", "lead_source": "webinar"},
            line=2,
        ),
        ContactInput(
            phone="+1 (415) 234-5678",
            name="O'Brien, Siobhán",
            email="siobhan@example.com",
            company='The "Best" Bakery',
            custom={"lead_source": "ads"},
            line=3,
        ),
        # line 4 is blank; this row's quoted custom value runs over lines 5 and 6
        ContactInput(
            phone="+44 7123 456789",
            name="Zoë Smith",
            first_name="Zoë",
            custom={"plan": "free", "lead_source": "trade fair\nBerlin"},
            line=5,
        ),
        ContactInput(phone="+91 98765 43210", name="Priya Sharma", timezone="Asia/Kolkata", line=7),
    ]


def test_semicolon_file_with_bom_crlf_and_loose_header() -> None:
    assert read_file("semicolon_bom.csv") == [
        ContactInput(
            phone="+4915123456789",
            name="Anna Schröder",
            email="anna@example.de",
            company="Nordlicht AG",
            line=2,
        ),
        ContactInput(
            phone="0151 2345 6789",
            name="Łukasz Nowak; Jr.",
            first_name="Łukasz",
            timezone="Europe/Warsaw",
            line=3,
        ),
    ]


def test_tab_separated_file() -> None:
    assert read_file("tab.tsv") == [
        ContactInput(phone="+4915123456789", name="Anna", company="Acme, Inc.", line=2),
        ContactInput(phone="+4915199999999", name="Bo", company='Tab\tand "quote"', line=3),
    ]


def test_bad_rows_are_reported_beside_good_ones() -> None:
    assert read_file("problems.csv") == [
        ContactInput(phone="+4915111111111", name="Anna", email="anna@example.de", line=2),
        RowProblem(line=3, reason="line has 5 fields, header has 3", raw_phone="+4915122222222"),
        RowProblem(line=4, reason="empty phone", raw_phone=None),
        # lines 5-7 hold only separators and spaces: skipped without a word
        ContactInput(phone="+4915133333333", line=8),  # short row: the missing fields are empty
        ContactInput(phone="+4915144444444", name="Dana", email="dana@example.de", line=9),
        ContactInput(
            phone="+4915155555555", name='Eve, "the" third', email="eve@example.com", line=10
        ),
    ]


def test_quote_left_open_is_one_problem_not_one_contact() -> None:
    data = b'phone,name\n+4915111111111,"Anna\n+4915122222222,Bob\n\n+4915133333333,Carl\n'
    reason = "a quoted value runs from line 2 to line 5; is a quote left open?"
    assert read_bytes(data) == [RowProblem(line=2, reason=reason, raw_phone="+4915111111111")]


def test_header_only_file_has_no_rows() -> None:
    assert read_file("header_only.csv") == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_phone.csv", "no 'phone' column; columns found: Name, Mobile, E-Mail"),
        ("latin1.csv", "line 3 is not UTF-8 (byte 0xe9); save the file as CSV UTF-8"),
        ("empty.csv", "the file is empty"),
    ],
)
def test_broken_files(name: str, message: str) -> None:
    with pytest.raises(CsvError) as caught:
        read_file(name)
    assert str(caught.value) == message


# --- whole-file errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\n\r\n  \n", "the file is empty"),
        (b"\xef\xbb\xbf", "the file is empty"),
        (b'phone,name\n+4915111111111,"' + b"x" * 200_000, "line 2: field larger than field"),
        (b'"' + b"x" * 200_000, "line 1: field larger than field"),
        (b"Phone,PHONE\n1,2\n", "column 'phone' appears twice (columns 1 and 2)"),
        (b";;\n", "no 'phone' column; columns found: none"),
        (b"+49 151 1111 1111,Anna\n", "the first line must name the columns (phone, name, ...)"),
        (b"PK\x03\x04\x14\x00\x06\x00", "this file is an Excel workbook or another zip archive"),
        (b"%PDF-1.7\n", "this file is a PDF document, not CSV"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "this file is an old Excel workbook (.xls)"),
        ("phone\n+49\n".encode("utf-16"), "this file is UTF-16 text; save it as CSV UTF-8"),
        (b"phone,name\n+49,\x00\x01\x02\n", "this is a binary file, not CSV text"),
        (b"phone\n+4915111111111\n\xc3", "line 3 is not UTF-8 (byte 0xc3)"),
        (b"\n\nphone\xff\n", "line 3 is not UTF-8 (byte 0xff)"),
        (b"phone\r\n1\r\n\r\n2,\xe9\r\n", "line 4 is not UTF-8 (byte 0xe9)"),
        (b"phone\r1\r2\xe9\r", "line 3 is not UTF-8 (byte 0xe9)"),
    ],
)
def test_whole_file_errors(data: bytes, message: str) -> None:
    with pytest.raises(CsvError) as caught:
        read_bytes(data)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_decoding_error_deep_in_a_file_names_its_line(newline: str) -> None:
    """Past the first read chunks, with rows already handed out, the line is still exact."""
    lines = ["phone,name", *(f"+4915{n:09d},Name {n}" for n in range(2, 20_000))]
    data = (newline.join(lines) + newline).encode() + b"+4915100000000,Ren\xe9e" + b"\n"
    batches = read_contacts_from_bytes(data, max_rows=100_000, batch_size=1000)
    assert len(next(batches)) == 1000
    with pytest.raises(CsvError) as caught:
        rows_of(batches)
    assert str(caught.value).startswith("line 20000 is not UTF-8 (byte 0xe9)")


# --- caps ------------------------------------------------------------------------------------


ROWS_3 = b"phone\n+4915111111111\n\n+4915122222222\nnot a phone\n"


def test_row_cap_counts_every_data_row_but_not_blank_ones() -> None:
    assert len(read_bytes(ROWS_3, max_rows=3)) == 3
    with pytest.raises(CsvError) as caught:
        read_bytes(ROWS_3, max_rows=2)
    assert str(caught.value) == "more than 2 rows (line 5); split the file"


def test_size_cap_refuses_bytes_and_paths_before_reading() -> None:
    data = (DATA / "comma.csv").read_bytes()
    cap = len(data) - 1
    message = f"^the file is over the {cap} bytes limit$"
    with pytest.raises(CsvError, match=message):
        read_contacts_from_bytes(data, max_rows=10, max_bytes=cap)
    with pytest.raises(CsvError, match=message):
        read_contacts_from_path(DATA / "comma.csv", max_rows=10, max_bytes=cap)
    exact = rows_of(read_contacts_from_bytes(data, max_rows=10, max_bytes=len(data)))
    assert exact == read_file("comma.csv")


def test_size_cap_holds_on_a_stream_of_unknown_length() -> None:
    data = b"phone\n" + b"+4915111111111\n" * 100_000  # 1.5 MB
    stream = read_contacts(io.BytesIO(data), max_rows=10**6, max_bytes=1024 * 1024)
    with pytest.raises(CsvError, match=r"^the file is over the 1 MB limit$"):
        rows_of(stream)


def test_missing_path_is_a_csv_error() -> None:
    with pytest.raises(CsvError, match=r"^cannot read .*nowhere\.csv: No such file"):
        read_contacts_from_path(DATA / "nowhere.csv", max_rows=10)


# --- streams, chunks and batches ---------------------------------------------------------------


def test_file_signature_is_recognised_across_tiny_chunks() -> None:
    with pytest.raises(CsvError, match=r"^this file is a PDF document, not CSV$"):
        rows_of(read_contacts(iter([b"%", b"P", b"DF-1.7\nphone\n"]), max_rows=10))


@pytest.mark.parametrize("chunk", [1, 2, 7, 4096])
def test_chunked_input_reads_like_the_whole_file(chunk: int) -> None:
    """Chunk edges fall inside BOMs, multi-byte letters, CRLFs and quoted newlines."""
    for name in ("comma.csv", "semicolon_bom.csv", "problems.csv"):
        data = (DATA / name).read_bytes()
        chunks = (data[at : at + chunk] for at in range(0, len(data), chunk))
        assert rows_of(read_contacts(chunks, max_rows=100)) == read_file(name)


def test_stream_is_left_open_for_its_owner() -> None:
    stream = io.BytesIO(b"phone\n+4915111111111\n")
    assert len(rows_of(read_contacts(stream, max_rows=10))) == 1
    assert not stream.closed


def test_batches_honour_the_size_and_keep_line_numbers() -> None:
    lines = ["phone,name"]
    for n in range(23):
        lines.append(f"+49151{n:08d},Name {n}")
        if n % 4 == 0:
            lines.append("")  # blank lines between rows shift the numbering
    batches = list(read_contacts_from_bytes("\n".join(lines).encode(), max_rows=23, batch_size=5))
    assert [len(batch) for batch in batches] == [5, 5, 5, 5, 3]
    contacts = [row for batch in batches for row in batch]
    assert all(isinstance(row, ContactInput) for row in contacts)
    expected = [at + 1 for at, text in enumerate(lines) if text.startswith("+49")]
    assert [row.line for row in contacts] == expected
    assert [row.phone for row in contacts if isinstance(row, ContactInput)] == [
        f"+49151{n:08d}" for n in range(23)
    ]


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        next(read_contacts_from_bytes(b"phone\n1\n", max_rows=10, batch_size=0))


@pytest.mark.slow
def test_generated_file_streams_in_little_memory(tmp_path: Path) -> None:
    """200k rows (17 MB of CSV, over 100 MB as objects) pass through under 3 MB: the reader
    never holds the file, only the batch in hand."""
    path = tmp_path / "leads.csv"
    write_csv(path, 200_000, seed=3, delimiter=";")
    counts = {"contacts": 0, "problems": 0}
    tracemalloc.start()
    try:
        for batch in read_contacts_from_path(path, max_rows=200_000, batch_size=1000):
            for row in batch:
                counts["contacts" if isinstance(row, ContactInput) else "problems"] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * 1024 * 1024
    assert counts["contacts"] + counts["problems"] == 200_000
    assert 400 < counts["problems"] < 800  # the empty phones: 0.3% of rows


# --- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("phone,name,email\n", ","),
        ("phone;name;email\r\n", ";"),
        ("phone\tname\n", "\t"),
        ('"phone;mobile",name\n', ","),
        ('phone;"name, full";email\n', ";"),
        ("phone\n", ","),
        ("phone,name;email\n", ","),
        ("phone;name;email,x\n", ";"),
    ],
)
def test_sniff_delimiter(header: str, delimiter: str) -> None:
    assert sniff_delimiter(header) == delimiter


@pytest.mark.parametrize(
    ("written", "normalized"),
    [
        ("phone", "phone"),
        (" PHONE ", "phone"),
        ("\ufeffPhone", "phone"),
        ("First Name", "first_name"),
        ("  Lead   Source ", "lead_source"),
        ("TimeZone", "timezone"),
        ("E-Mail", "e-mail"),
        ("", ""),
    ],
)
def test_normalize_column(written: str, normalized: str) -> None:
    assert normalize_column(written) == normalized
