"""Reading the table files that CRMs and spreadsheets write: CSV/TSV/TXT, Parquet and Excel workbooks.

Text files: the character encoding comes from the byte-order mark or ``charset_normalizer``, the delimiter and
quote character from ``clevercsv`` on its first 200 lines, then pandas' C reader reads the whole file. Every cell
comes back as text (blank cells as NaN) so that ids such as ``00123`` keep their zeros; parsing is left to
validation. Semicolon files with decimal commas get dot decimals. Anything that cannot be read raises
:class:`UnreadableFile` naming the file.
"""

from __future__ import annotations

import codecs
import warnings
from dataclasses import dataclass
from pathlib import Path

import charset_normalizer
import clevercsv
import pandas as pd
from python_calamine import CalamineError

TEXT_EXTENSIONS = (".csv", ".txt", ".tsv")
EXCEL_EXTENSIONS = (".xlsx", ".xls")
SAMPLE_BYTES = 64 * 1024
SAMPLE_LINES = 200  # of those, the lines clevercsv sees: its time grows with the sample
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
# Byte-order marks decide the encoding outright; UTF-32 LE first, as its mark starts with UTF-16 LE's.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
BOM_ENCODINGS = {encoding for _, encoding in BOMS}
# The encodings spreadsheets and CRM exports are written in: Unicode and the Windows code pages (Western,
# Central European, Cyrillic, Greek, Turkish, Hebrew, Arabic, Baltic, Vietnamese, Thai, CJK) and Mac Roman.
# DOS and other legacy code pages are left out: on short samples they tie with cp1252 and garble accents.
CANDIDATE_ENCODINGS = [
    "ascii", "utf_8", "utf_16", "utf_32", "cp1250", "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256",
    "cp1257", "cp1258", "cp874", "cp932", "gb18030", "big5", "cp949", "mac_roman",
]  # fmt: skip
# Among encodings the detector finds equally good, prefer these (Excel's Western default after UTF-8).
PREFERRED_ENCODINGS = ("utf-8", "cp1252")
# A number written with a decimal comma, optionally with '.' thousands groups: 12,5  -3  1.234,5
LOCALE_NUMBER = r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?"


class UnreadableFile(ValueError):
    """A table file that cannot be read as given; ``file`` is its path, ``reason`` says why and what to try."""

    def __init__(self, file: Path, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass(frozen=True)
class ReadOptions:
    """Overrides for :func:`read_table`; ``None`` means detect (or, for ``sheet``, the first sheet)."""

    delimiter: str | None = None  # one character, or "tab" / "\\t" / "comma" / "semicolon" / "pipe"
    encoding: str | None = None  # any Python codec name, e.g. "cp1252"
    sheet: str | int | None = None  # Excel: sheet name or 0-based index
    decimal: str | None = None  # "," or "." (--decimal): the decimal mark of a file not delimited by commas


@dataclass(frozen=True)
class FileFormat:
    """What was detected (or given) for one file, for the report and the MLflow run."""

    kind: str  # "csv" | "parquet" | "excel"
    encoding: str | None  # Python codec name: "utf-8", "utf-8-sig", "utf-16", "cp1252", ...
    delimiter: str | None
    decimal: str | None  # "," when decimal commas were found and converted, else "."; None if not text
    sheet: str | None
    detected: bool  # False when everything came from overrides
    given: tuple[str, ...] = ()  # names of the fields taken from ReadOptions rather than detected
    ambiguous: tuple[str, ...] = ()  # number columns like "1.500" read with '.' as the decimal point, unsure

    def describe(self) -> str:
        """One human line, e.g. "CSV, cp1252 (detected), ';'-delimited (detected), decimal comma"."""
        if self.kind == "parquet":
            return "Parquet"
        if self.kind == "excel":
            return f"Excel workbook, sheet '{self.sheet}' ({'given' if 'sheet' in self.given else 'first sheet'})"
        delimiter = "tab" if self.delimiter == "\t" else f"'{self.delimiter}'"
        parts = ["CSV", f"{self.encoding} ({self._source('encoding')})"]
        parts.append(f"{delimiter}-delimited ({self._source('delimiter')})")
        if self.decimal == ",":
            parts.append(f"decimal comma ({self._source('decimal')})")
        if self.ambiguous:
            columns = ", ".join(f"'{c}'" for c in self.ambiguous)
            parts.append(
                f"'.' read as the decimal point in {columns} (1.500 is 1.5; if '.' groups thousands there, "
                "give --decimal ',')"
            )
        return ", ".join(parts)

    def _source(self, field: str) -> str:
        return "given" if field in self.given else "detected"


def read_table(path: Path, options: ReadOptions = ReadOptions()) -> tuple[pd.DataFrame, FileFormat]:
    """Read one table file by its extension, every cell as text.

    Args:
        path: a ``.csv``/``.txt``/``.tsv`` text file, a ``.parquet`` file or an ``.xlsx``/``.xls`` workbook.
        options: overrides for the delimiter, encoding and sheet; the rest is detected.

    Returns:
        The frame (one row per data line; str cells, blank cells NaN, except Parquet which is returned as
        stored) and the :class:`FileFormat` it was read with.

    Raises:
        UnreadableFile: unknown extension, empty or header-only file, binary content, bytes the encoding
            cannot decode, rows with more fields than the header (the line is named), a corrupt workbook or
            a missing sheet (the sheets are listed).
    """
    suffix = path.suffix.lower()
    if suffix in TEXT_EXTENSIONS:
        return _read_text(path, options)
    if suffix in EXCEL_EXTENSIONS:
        return _read_excel(path, options)
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
            raise UnreadableFile(path, f"not a readable Parquet file ({exc})") from exc
        return frame, FileFormat("parquet", None, None, None, None, detected=False)
    known = ", ".join((*TEXT_EXTENSIONS, ".parquet", *EXCEL_EXTENSIONS))
    raise UnreadableFile(path, f"unsupported file type '{path.suffix}' (use one of {known})")


def _read_text(path: Path, options: ReadOptions) -> tuple[pd.DataFrame, FileFormat]:
    try:
        with path.open("rb") as handle:
            head = handle.read(SAMPLE_BYTES + 1)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot open the file ({exc.strerror})") from exc
    if not head.strip():
        raise UnreadableFile(path, "the file is empty")
    truncated = len(head) > SAMPLE_BYTES
    if options.encoding:
        encoding = _check_encoding(path, options.encoding)
    else:
        encoding = _detect_encoding(path, _whole_lines(head))
    delimiter = _check_delimiter(path, options.delimiter) if options.delimiter else None
    try:
        frame, delimiter = _read_delimited(path, head, truncated, encoding, delimiter)
    except clevercsv.exceptions.Error as exc:  # e.g. NUL bytes: a binary file, or UTF-16 without its BOM
        raise UnreadableFile(path, f"not a text table ({exc}); if it is UTF-16, give --encoding utf-16-le") from exc
    except UnicodeDecodeError as exc:
        if options.encoding or encoding in BOM_ENCODINGS:
            raise _undecodable(path, encoding, exc) from exc
        encoding = _redetect_encoding(path, failed=encoding)  # the first 64 KiB decoded; a later line did not
        try:
            frame, delimiter = _read_delimited(path, head, truncated, encoding, delimiter)
        except UnicodeDecodeError as again:
            raise _undecodable(path, encoding, again) from again
    except UnicodeError as exc:  # e.g. "UTF-16 stream does not start with BOM"
        raise UnreadableFile(path, f"cannot decode the file as {encoding} ({exc}); check --encoding") from exc
    _require_rows(path, frame)
    # A decimal comma is possible wherever the comma is not the delimiter (semicolon files, and the tab files
    # of Excel's "Unicode text" in a European locale).
    if options.decimal not in (None, ",", "."):
        raise UnreadableFile(path, f"decimal mark {options.decimal!r} given: use ',' or '.'")
    converted, ambiguous = (False, ()) if delimiter == "," else _convert_decimal_commas(frame, options.decimal)
    decimal = "," if converted else "."
    given = tuple(name for name in ("encoding", "delimiter", "decimal") if getattr(options, name))
    return frame, FileFormat(
        "csv",
        encoding,
        delimiter,
        decimal,
        None,
        detected=not {"encoding", "delimiter"} <= set(given),
        given=given,
        ambiguous=ambiguous,
    )


def _read_delimited(
    path: Path, head: bytes, truncated: bool, encoding: str, delimiter: str | None
) -> tuple[pd.DataFrame, str]:
    """The whole file with pandas' C reader; delimiter and quoting from clevercsv on the head's first lines."""
    quotechar = '"'
    if delimiter is None:
        lines = head.decode(encoding, errors="replace").split("\n", SAMPLE_LINES)  # the rest is the last piece
        if truncated or len(lines) > SAMPLE_LINES:
            lines = lines[:-1] or lines  # drop the piece that may be cut short
        dialect = clevercsv.Detector().detect("\n".join(lines), delimiters=list(DELIMITERS))
        delimiter = dialect.delimiter if dialect is not None and dialect.delimiter in DELIMITERS else ","
        quotechar = (dialect.quotechar if dialect is not None else "") or '"'
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # fields past the header would be lost
            frame = pd.read_csv(
                path,
                sep=delimiter,
                quotechar=quotechar,
                encoding=encoding,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                index_col=False,  # a row with one field more than the header is an error, not an index column
            )
    except pd.errors.ParserWarning as exc:
        reason = (
            f"some rows have more fields than the header ({delimiter!r}-delimited); their last fields would be lost"
        )
        raise UnreadableFile(path, reason) from exc
    except pd.errors.EmptyDataError as exc:
        raise UnreadableFile(path, "no header row (the file holds only blank lines)") from exc
    except pd.errors.ParserError as exc:
        raise UnreadableFile(path, f"not a regular table with {delimiter!r} as delimiter: {str(exc).strip()}") from exc
    first = str(frame.columns[0])
    if first.startswith("\ufeff"):  # a BOM read with a BOM-less codec given by the user
        frame = frame.rename(columns={frame.columns[0]: first.removeprefix("\ufeff")})
    return frame, delimiter


def _detect_encoding(path: Path, sample: bytes, failed: str | None = None) -> str:
    """The BOM's encoding, else charset_normalizer's best on whole lines (ties broken by PREFERRED_ENCODINGS)."""
    for bom, encoding in BOMS:
        if sample.startswith(bom):
            return encoding
    excluded = [failed.replace("-", "_")] if failed else None
    matches = charset_normalizer.from_bytes(sample, cp_isolation=CANDIDATE_ENCODINGS, cp_exclusion=excluded)
    best = matches.best()
    if best is None:
        raise UnreadableFile(
            path, "not a text file (no known character encoding decodes it; a workbook or Parquet file renamed?)"
        )
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    names = {_codec_name(name) for match in tied for name in match.could_be_from_charset}
    return next((name for name in PREFERRED_ENCODINGS if name in names), _codec_name(best.encoding))


def _redetect_encoding(path: Path, failed: str) -> str:
    """Detect again on the lines around the first byte that ``failed`` could not decode."""
    data = path.read_bytes()
    try:
        data.decode(failed)
        start = 0
    except UnicodeDecodeError as exc:
        start = max(0, exc.start - SAMPLE_BYTES // 2)
    return _detect_encoding(path, _whole_lines(data, start), failed=failed)


def _whole_lines(data: bytes, start: int = 0) -> bytes:
    """The lines wholly inside ``data[start : start + SAMPLE_BYTES]``, so that no character is cut in two."""
    window = data[start : start + SAMPLE_BYTES]
    if start > 0:
        window = window[window.find(b"\n") + 1 :]
    if start + SAMPLE_BYTES < len(data):
        window = window[: window.rfind(b"\n") + 1] or window
    return window


def _codec_name(name: str) -> str:
    codec = codecs.lookup(name).name
    return "utf-8" if codec == "ascii" else codec  # an ASCII head is read as UTF-8, its superset


def _check_encoding(path: Path, encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError as exc:
        raise UnreadableFile(path, f"unknown encoding '{encoding}' given (try e.g. utf-8 or cp1252)") from exc


def _check_delimiter(path: Path, delimiter: str) -> str:
    delimiter = DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if len(delimiter) != 1:
        raise UnreadableFile(path, f"delimiter {delimiter!r} given: it must be one character or 'tab'")
    return delimiter


def _undecodable(path: Path, encoding: str, exc: UnicodeDecodeError) -> UnreadableFile:
    byte = exc.object[exc.start : exc.start + 1].hex()
    return UnreadableFile(
        path, f"bytes that are not {encoding} (e.g. 0x{byte}); pass the file's encoding with --encoding"
    )


def _require_rows(path: Path, frame: pd.DataFrame, where: str = "the file") -> None:
    """A table needs a header; a header alone is an empty table (e.g. no touch points yet), not an error."""
    if frame.columns.empty:
        raise UnreadableFile(path, f"{where} is empty")


def _convert_decimal_commas(frame: pd.DataFrame, decimal: str | None = None) -> tuple[bool, tuple[str, ...]]:
    """Turn "1.234,5" into "1234.5" in the columns whose cells are all numbers in the decimal-comma form.

    A column with a decimal comma in some cell is converted. It also shows that the file was written with a
    decimal comma, so that columns whose numbers only have '.' thousands groups ("1.500", "12.000") are
    converted too (1500, 12000). Without that evidence such columns are left as they are ("1.500" reads
    1.5) and returned as ambiguous, for the report. ``decimal`` ("," or ".", ``--decimal``) decides instead
    of the evidence. Columns holding any other text (names, ids with letters, lists such as "3,4,5") are
    left alone. Returns (whether any column was converted, the ambiguous columns).
    """
    if decimal == ".":
        return False, ()
    with_comma, grouped = [], []
    for column in frame.columns:
        present = frame[column].dropna()
        if present.empty or not present.head(1000).str.fullmatch(LOCALE_NUMBER).all():  # cheap rejection first
            continue
        if not present.str.fullmatch(LOCALE_NUMBER).all():
            continue
        if present.str.contains(",", regex=False).any():
            with_comma.append(column)
        elif present.str.contains(r"\d\.\d{3}", regex=True).any():
            grouped.append(column)
    european = decimal == "," or bool(with_comma)
    for column in with_comma + (grouped if european else []):
        frame[column] = frame[column].str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    return bool(with_comma or (european and grouped)), () if european else tuple(map(str, grouped))


def _read_excel(path: Path, options: ReadOptions) -> tuple[pd.DataFrame, FileFormat]:
    """First (or the given) sheet with python-calamine; dates as ISO text, whole numbers without ".0"."""
    try:
        with pd.ExcelFile(path, engine="calamine") as book:
            names = [str(name) for name in book.sheet_names]
            sheet = _pick_sheet(path, names, options.sheet)
            frame = pd.read_excel(book, sheet_name=sheet, dtype=str, keep_default_na=False, na_values=[""])
    except CalamineError as exc:
        with path.open("rb") as handle:
            start = handle.read(512).lstrip().lower()
        if start.startswith((b"<!doctype html", b"<html", b"<table", b"<?xml")):
            reason = (
                "an HTML or XML page named as a workbook (some CRMs export so): open it in Excel and save it as "
                ".xlsx or .csv"
            )
            raise UnreadableFile(path, reason) from exc
        raise UnreadableFile(path, f"not a readable Excel workbook ({exc})") from exc
    frame.columns = pd.Index([str(column) for column in frame.columns])
    _require_rows(path, frame, where=f"sheet '{sheet}'")
    given = ("sheet",) if options.sheet is not None else ()
    return frame, FileFormat("excel", None, None, None, sheet, detected=not given, given=given)


def _pick_sheet(path: Path, names: list[str], sheet: str | int | None) -> str:
    if sheet is None:
        sheet = 0
    if isinstance(sheet, str) and sheet not in names and sheet.isdigit():
        sheet = int(sheet)  # "--sheet 1" from a command line means the index
    if isinstance(sheet, int) and 0 <= sheet < len(names):
        return names[sheet]
    if sheet in names:
        return str(sheet)
    listed = ", ".join(f"'{name}'" for name in names) or "none"
    raise UnreadableFile(path, f"no sheet {sheet!r} in the workbook (sheets: {listed}; give a name or 0-based index)")
