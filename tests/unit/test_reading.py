"""Reading real exports: every shape of one small lead table reads back as the same text frame."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.reading import FileFormat, ReadOptions, UnreadableFile, read_table


def clean_frame() -> pd.DataFrame:
    """A few leads as text: ids with leading zeros, accents and €, a quoted delimiter, a blank cell."""
    return pd.DataFrame(
        {
            "lead_id": ["00017", "00018", "00019"],
            "created_at": ["2025-03-01 10:00:00", "2025-03-02 11:30:00", "2025-03-03 09:15:00"],
            "company": ["Müller", "Café €", "Smith; Jones, Ltd"],
            "amount": ["12.5", "3", None],
        },
        dtype=str,
    )


def with_decimal_commas(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(amount=frame["amount"].str.replace(".", ",", regex=False))


def write_text(path: Path, frame: pd.DataFrame, **to_csv: object) -> Path:
    frame.to_csv(path, index=False, **to_csv)  # type: ignore[call-overload]
    return path


Writer = Callable[[Path], Path]
# name -> (writer, expected (kind, encoding, delimiter, decimal))
TEXT_SHAPES: dict[str, tuple[Writer, tuple[str, str, str, str]]] = {
    "comma utf-8": (lambda d: write_text(d / "leads.csv", clean_frame()), ("csv", "utf-8", ",", ".")),
    "utf-8 with BOM": (
        lambda d: write_text(d / "leads.csv", clean_frame(), encoding="utf-8-sig"),
        ("csv", "utf-8-sig", ",", "."),
    ),
    "excel europe: semicolon, decimal comma, cp1252": (
        lambda d: write_text(d / "leads.csv", with_decimal_commas(clean_frame()), sep=";", encoding="cp1252"),
        ("csv", "cp1252", ";", ","),
    ),
    "excel unicode text: tab, utf-16 with BOM": (
        lambda d: write_text(d / "leads.txt", clean_frame(), sep="\t", encoding="utf-16", lineterminator="\r\n"),
        ("csv", "utf-16", "\t", "."),
    ),
    "tsv": (lambda d: write_text(d / "leads.tsv", clean_frame(), sep="\t"), ("csv", "utf-8", "\t", ".")),
    "pipe": (lambda d: write_text(d / "leads.csv", clean_frame(), sep="|"), ("csv", "utf-8", "|", ".")),
    "crlf, every field quoted": (
        lambda d: write_text(d / "leads.csv", clean_frame(), quoting=csv.QUOTE_ALL, lineterminator="\r\n"),
        ("csv", "utf-8", ",", "."),
    ),
}


def fields(fmt: FileFormat) -> tuple[str | None, ...]:
    return (fmt.kind, fmt.encoding, fmt.delimiter, fmt.decimal)


@pytest.mark.parametrize("shape", list(TEXT_SHAPES))
def test_every_text_shape_reads_as_the_clean_frame(tmp_path: Path, shape: str) -> None:
    writer, expected = TEXT_SHAPES[shape]
    frame, fmt = read_table(writer(tmp_path))
    pd.testing.assert_frame_equal(frame, clean_frame())
    assert fields(fmt) == expected
    assert fmt.detected and fmt.given == () and fmt.sheet is None


def test_cells_stay_text_and_blanks_are_nan(tmp_path: Path) -> None:
    frame, _ = read_table(write_text(tmp_path / "leads.csv", clean_frame()))
    assert frame["lead_id"].tolist() == ["00017", "00018", "00019"]  # not 17
    assert frame["amount"].tolist()[:2] == ["12.5", "3"]
    assert frame["amount"].isna().tolist() == [False, False, True]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    line_end=st.sampled_from(["\n", "\r\n"]),
    decimal_comma=st.booleans(),
)
def test_any_shape_round_trips(
    tmp_path: Path, delimiter: str, encoding: str, quoting: int, line_end: str, decimal_comma: bool
) -> None:
    decimal_comma = decimal_comma and delimiter == ";"
    written = with_decimal_commas(clean_frame()) if decimal_comma else clean_frame()
    path = write_text(
        tmp_path / "leads.csv", written, sep=delimiter, encoding=encoding, quoting=quoting, lineterminator=line_end
    )
    frame, fmt = read_table(path)
    pd.testing.assert_frame_equal(frame, clean_frame())
    assert (fmt.encoding, fmt.delimiter, fmt.decimal) == (encoding, delimiter, "," if decimal_comma else ".")


def test_decimal_commas_become_dots_only_in_all_number_columns(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_text(
        "lead_id;amount;big;tags;note;version\n"
        "00017;12,5;1.234,5;3,4,5;2,5;1.234\n"
        "00018;-3;2.000.000;10,11,12;n/a;1.500\n"
        "00019;;7,25;;;\n",
        encoding="cp1252",
    )
    frame, fmt = read_table(path)
    assert fmt.decimal == ","
    assert frame["amount"].tolist()[:2] == ["12.5", "-3"]
    assert frame["big"].tolist() == ["1234.5", "2000000", "7.25"]
    assert frame["lead_id"].tolist() == ["00017", "00018", "00019"]  # ids untouched
    assert frame["tags"].tolist()[:2] == ["3,4,5", "10,11,12"]  # lists, not numbers
    assert frame["note"].tolist()[:2] == ["2.5", "n/a"]  # a placeholder stays, for the contract to read as missing
    # The file writes decimal commas, so '.' groups thousands in a column of only such numbers too
    assert frame["version"].tolist()[:2] == ["1234", "1500"]
    assert fmt.ambiguous == ()


def test_without_a_cell_that_tells_the_decimal_mark_numbers_are_left_as_written_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_text("lead_id;budget\n1;1.500\n2;12.000\n3;7\n")
    frame, fmt = read_table(path)
    assert frame["budget"].tolist() == ["1.500", "12.000", "7"] and fmt.decimal == ""
    assert fmt.ambiguous == ("budget",)
    assert "no cell tells the decimal mark of 'budget'" in fmt.describe() and "--decimal ','" in fmt.describe()
    frame, fmt = read_table(path, ReadOptions(decimal=","))
    assert frame["budget"].tolist() == ["1500", "12000", "7"] and fmt.describe().endswith("decimal comma (given)")
    frame, _ = read_table(path, ReadOptions(decimal="."))
    assert frame["budget"].tolist() == ["1.500", "12.000", "7"]


@pytest.mark.parametrize(
    ("text", "column", "expected"),
    [
        # another column's decimal point tells: 1.500 is one and a half
        ("id;budget;rate\n1;1.500;0.5\n2;12.000;0.25\n", "budget", ["1.500", "12.000"]),
        # a US tab file: thousands commas go, as the decimal points elsewhere tell
        ("id\tamount\trate\n1\t1,500\t0.25\n2\t2,250.5\t1\n", "amount", ["1500", "2250.5"]),
        # a comma-delimited file: quoted thousands groups go
        ('id,amount\n1,"1,500"\n2,"2,250.5"\n3,7\n', "amount", ["1500", "2250.5", "7"]),
        # a placeholder among decimal-comma numbers stays for the data contract to read as missing
        ("id;revenue\n1;12,5\n2;n/a\n3;-\n4;3\n", "revenue", ["12.5", "n/a", "-", "3"]),
        # French: narrow or no-break spaces group thousands
        ("id;revenue\n1;1\u00a0234,5\n2;12\u202f000,25\n", "revenue", ["1234.5", "12000.25"]),
    ],
)
def test_numbers_are_read_by_the_decimal_mark_the_file_shows(
    tmp_path: Path, text: str, column: str, expected: list
) -> None:
    path = tmp_path / "deals.csv"
    path.write_text(text, encoding="utf-8")
    frame, _ = read_table(path)
    assert frame[column].tolist() == expected


def test_ids_are_never_read_as_numbers(tmp_path: Path) -> None:
    """'1.001' stays an id when another column of the file writes decimal commas (joins with other files)."""
    path = tmp_path / "leads.csv"
    path.write_text("lead_id;revenue\n1.001;1,5\n2.002;2,5\n")
    frame, fmt = read_table(path, ReadOptions(text_columns=("lead_id",)))
    assert frame["lead_id"].tolist() == ["1.001", "2.002"] and frame["revenue"].tolist() == ["1.5", "2.5"]
    assert fmt.decimal == ","


def test_commas_in_a_comma_file_are_not_decimals(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text('lead_id,amount\n00017,"12,5"\n00018,3\n', encoding="utf-8")
    frame, fmt = read_table(path)
    assert fmt.decimal == "." and frame["amount"].tolist() == ["12,5", "3"]


def test_a_late_non_utf8_line_is_found_past_the_sample(tmp_path: Path) -> None:
    rows = "".join(f"{i:05d},2025-03-01 10:00:00,Smith\n" for i in range(5000))  # ~170 KB of ASCII
    path = tmp_path / "leads.csv"
    path.write_bytes(
        ("lead_id,created_at,company\n" + rows + "99999,2025-03-01 10:00:00,Müller Café\n").encode("cp1252")
    )
    frame, fmt = read_table(path)
    assert fmt.encoding == "cp1252"
    assert frame["company"].iloc[-1] == "Müller Café"


# ---- overrides ----


def test_overrides_win_and_are_reported_as_given(tmp_path: Path) -> None:
    path = write_text(tmp_path / "leads.csv", clean_frame().head(2), encoding="cp1252")  # detected: cp1252, ","
    frame, fmt = read_table(path, ReadOptions(encoding="latin-1", delimiter=";"))
    assert (fmt.encoding, fmt.delimiter) == ("iso8859-1", ";")
    assert not fmt.detected and set(fmt.given) == {"encoding", "delimiter"}
    assert frame.columns.tolist() == ["lead_id,created_at,company,amount"]  # split as told, not as detected
    assert "\x80" in str(frame.iloc[1, 0])  # latin-1 has no €: decoded as told
    assert fmt.describe() == "CSV, iso8859-1 (given), ';'-delimited (given)"


@pytest.mark.parametrize("spelling", ["\t", "\\t", "tab", "TAB"])
def test_tab_can_be_given_by_name(tmp_path: Path, spelling: str) -> None:
    path = write_text(tmp_path / "leads.txt", clean_frame(), sep="\t")
    frame, fmt = read_table(path, ReadOptions(delimiter=spelling))
    pd.testing.assert_frame_equal(frame, clean_frame())
    assert fmt.delimiter == "\t" and fmt.given == ("delimiter",) and fmt.detected


def test_a_given_encoding_never_leaves_the_bom_in_the_first_column(tmp_path: Path) -> None:
    path = write_text(tmp_path / "leads.csv", clean_frame(), encoding="utf-8-sig")
    frame, _ = read_table(path, ReadOptions(encoding="utf-8"))
    pd.testing.assert_frame_equal(frame, clean_frame())


def test_describe_says_what_was_detected(tmp_path: Path) -> None:
    writer, _ = TEXT_SHAPES["excel europe: semicolon, decimal comma, cp1252"]
    _, fmt = read_table(writer(tmp_path))
    assert fmt.describe() == "CSV, cp1252 (detected), ';'-delimited (detected), decimal comma (detected)"
    _, fmt = read_table(write_text(tmp_path / "leads.tsv", clean_frame(), sep="\t"))
    assert fmt.describe() == "CSV, utf-8 (detected), tab-delimited (detected)"


# ---- Excel and Parquet ----


def write_workbook(path: Path, sheets: tuple[str, ...] = ("Leads",)) -> Path:
    """The clean frame as a user would type it: text ids, real date cells, number cells, an empty cell."""
    book = openpyxl.Workbook()
    for index, title in enumerate(sheets):
        sheet = book.active if index == 0 else book.create_sheet()
        assert sheet is not None
        sheet.title = title
        if title != "Leads":
            sheet.append(["something else"])
            sheet.append([1])
            continue
        sheet.append(["lead_id", "created_at", "company", "amount"])
        sheet.append(["00017", dt.datetime(2025, 3, 1, 10, 0), "Müller", 12.5])
        sheet.append(["00018", dt.datetime(2025, 3, 2, 11, 30), "Café €", 3])
        sheet.append(["00019", dt.datetime(2025, 3, 3, 9, 15), "Smith; Jones, Ltd", None])
    book.save(path)
    return path


def test_xlsx_reads_as_the_clean_frame(tmp_path: Path) -> None:
    frame, fmt = read_table(write_workbook(tmp_path / "leads.xlsx"))
    pd.testing.assert_frame_equal(frame, clean_frame())  # dates as ISO text, 3 as "3" not "3.0"
    assert fields(fmt) == ("excel", None, None, None) and fmt.sheet == "Leads"
    assert fmt.describe() == "Excel workbook, sheet 'Leads' (first sheet)"


@pytest.mark.parametrize("sheet", ["Leads", 1, "1"])
def test_a_later_sheet_is_read_by_name_or_index(tmp_path: Path, sheet: str | int) -> None:
    path = write_workbook(tmp_path / "leads.xlsx", sheets=("Notes", "Leads"))
    frame, fmt = read_table(path, ReadOptions(sheet=sheet))
    pd.testing.assert_frame_equal(frame, clean_frame())
    assert fmt.sheet == "Leads" and fmt.given == ("sheet",) and not fmt.detected


def test_parquet_is_returned_as_stored(tmp_path: Path) -> None:
    stored = pd.DataFrame({"lead_id": ["00017"], "amount": [12.5]})
    stored.to_parquet(tmp_path / "leads.parquet", index=False)
    frame, fmt = read_table(tmp_path / "leads.parquet")
    pd.testing.assert_frame_equal(frame, stored)
    assert fmt.kind == "parquet" and fmt.describe() == "Parquet"


# ---- broken input: one clear error naming the file ----


def ragged(d: Path) -> Path:
    path = d / "leads.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n")
    return path


def only_header(d: Path) -> Path:
    path = d / "leads.csv"
    path.write_text("lead_id;created_at\n")
    return path


def empty(d: Path) -> Path:
    path = d / "leads.csv"
    path.write_bytes(b"")
    return path


def workbook_named_csv(d: Path) -> Path:
    return write_workbook(d / "leads.xlsx").rename(d / "leads.csv")


def binary(d: Path) -> Path:
    path = d / "leads.csv"
    path.write_bytes(bytes(range(256)) * 40)
    return path


def corrupt_workbook(d: Path) -> Path:
    path = write_workbook(d / "leads.xlsx")
    path.write_bytes(path.read_bytes()[:500])
    return path


def text_named_xlsx(d: Path) -> Path:
    return write_text(d / "leads.xlsx", clean_frame())


def corrupt_parquet(d: Path) -> Path:
    return write_text(d / "leads.parquet", clean_frame())


def unknown_extension(d: Path) -> Path:
    return write_text(d / "leads.json", clean_frame())


BROKEN: dict[str, tuple[Writer, str]] = {
    "ragged rows": (ragged, "line 4"),
    "empty file": (empty, "empty"),
    "a workbook named .csv": (workbook_named_csv, "not a text file"),
    "binary bytes": (binary, "not a text file"),
    "corrupt workbook": (corrupt_workbook, "Excel workbook"),
    "text named .xlsx": (text_named_xlsx, "Excel workbook"),
    "corrupt parquet": (corrupt_parquet, "Parquet"),
    "unknown extension": (unknown_extension, "unsupported file type '.json'"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_input_raises_unreadable_file_naming_it(tmp_path: Path, case: str) -> None:
    writer, says = BROKEN[case]
    path = writer(tmp_path)
    with pytest.raises(UnreadableFile) as err:
        read_table(path)
    assert str(path) in str(err.value) and err.value.file == path
    assert says in err.value.reason


def test_an_html_page_named_xls_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "leads.xls"
    path.write_text("<html><body><table><tr><td>lead_id</td></tr><tr><td>1</td></tr></table></body></html>")
    with pytest.raises(UnreadableFile, match=r"HTML or XML page named as a workbook.*save it as \.xlsx or \.csv"):
        read_table(path)


def test_a_header_alone_is_an_empty_table_with_its_columns(tmp_path: Path) -> None:
    frame, _ = read_table(only_header(tmp_path))
    assert frame.empty and len(frame.columns) > 1


def test_missing_sheet_lists_the_sheets(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "leads.xlsx", sheets=("Leads", "Notes"))
    for missing in ("Deals", 2):
        with pytest.raises(UnreadableFile, match="sheets: 'Leads', 'Notes'"):
            read_table(path, ReadOptions(sheet=missing))


def test_bytes_the_given_encoding_cannot_decode_suggest_the_option(tmp_path: Path) -> None:
    path = write_text(tmp_path / "leads.csv", clean_frame(), encoding="cp1252")
    with pytest.raises(UnreadableFile) as err:
        read_table(path, ReadOptions(encoding="utf-8"))
    assert str(path) in str(err.value)
    assert "utf-8" in err.value.reason and "--encoding" in err.value.reason


@pytest.mark.parametrize("options", [ReadOptions(encoding="no-such-codec"), ReadOptions(delimiter=";;")])
def test_bad_overrides_are_named(tmp_path: Path, options: ReadOptions) -> None:
    path = write_text(tmp_path / "leads.csv", clean_frame())
    with pytest.raises(UnreadableFile, match="given"):
        read_table(path, options)
