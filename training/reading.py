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

from features.spec import category_key

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
# Numbers as locales write them: a decimal comma with '.' or space thousands groups (12,5  1.234,5  1 234,5),
# or a decimal point with ',' or space groups (12.5  1,234.5); ANY_NUMBER is either.
_GROUPS = "(?:\\d{1,3}(?:%s\\d{3})+|\\d+)"
EU_NUMBER = r"[+-]?" + _GROUPS % r"[.\u00a0\u202f ]" + r"(?:,\d+)?"
US_NUMBER = r"[+-]?" + _GROUPS % r"[,'’\u00a0\u202f ]" + r"(?:\.\d+)?"  # Swiss: 1'234.50
ANY_NUMBER = f"(?:{EU_NUMBER})|(?:{US_NUMBER})"
COMMA_ONLY = r"\d,(?:\d{1,2}|\d{4,})$|\d\.\d{3},\d|^[+-]?0,\d"  # a decimal comma, not thousands
POINT_ONLY = r"\d\.(?:\d{1,2}|\d{4,})$|\d,\d{3}\.\d|^[+-]?0\.\d"  # a decimal point, not thousands


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
    decimal: str | None = None  # "," or "." (--decimal): the decimal mark of the file's numbers
    text_columns: tuple[str, ...] = ()  # columns never read as numbers (ids)
    fallback_decimal: str | None = None  # the mark other files of the same export showed, when this one shows none


@dataclass(frozen=True)
class FileFormat:
    """What was detected (or given) for one file, for the report and the MLflow run."""

    kind: str  # "csv" | "parquet" | "excel"
    encoding: str | None  # Python codec name: "utf-8", "utf-8-sig", "utf-16", "cp1252", ...
    delimiter: str | None
    decimal: str | None  # the numbers' decimal mark: "," or "."; "" when the file does not tell; None if not text
    sheet: str | None
    detected: bool  # False when everything came from overrides
    given: tuple[str, ...] = ()  # names of the fields taken from ReadOptions rather than detected
    ambiguous: tuple[str, ...] = ()  # number columns like "1.500" or "1,500" left as written: the mark is unknown

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
        elif self.decimal == "." and "decimal" in self.given:
            parts.append("decimal point (given)")
        if self.ambiguous:
            columns = ", ".join(f"'{c}'" for c in self.ambiguous)
            parts.append(
                f"no cell tells the decimal mark of {columns} (is 1.500 one and a half, or fifteen hundred?): left "
                "as written, so 1.500 reads 1.5 and 1,500 is text; give --decimal ',' or --decimal '.'"
            )
        return ", ".join(parts)

    def _source(self, field: str) -> str:
        return "given" if field in self.given else "detected"


def read_table(path: Path, options: ReadOptions = ReadOptions()) -> tuple[pd.DataFrame, FileFormat]:
    """Read one table file by its extension, every cell as text.

    Args:
        path: a ``.csv``/``.txt``/``.tsv`` text file, a ``.parquet`` file, a folder of ``.parquet`` part files
            (read in name order) or an ``.xlsx``/``.xls`` workbook.
        options: overrides for the delimiter, encoding and sheet; the rest is detected.

    Returns:
        The frame (one row per data line; str cells, blank cells NaN, except Parquet which is returned as
        stored) and the :class:`FileFormat` it was read with.

    Raises:
        UnreadableFile: unknown extension, empty or header-only file, binary content, bytes the encoding
            cannot decode, rows with more fields than the header (the line is named), a corrupt workbook or
            a missing sheet (the sheets are listed).
    """
    if path.is_dir():  # a partitioned table: a folder of Parquet part files (as Dask and Spark write them)
        parts = sorted(path.glob("*.parquet"))
        if not parts:
            raise UnreadableFile(path, "a folder with no .parquet part files")
        try:
            frame = pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
        except (OSError, ValueError) as exc:
            raise UnreadableFile(path, f"not readable Parquet part files ({exc})") from exc
        return frame, FileFormat("parquet", None, None, None, None, detected=False)
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
    decimal, ambiguous = _convert_numbers(
        frame, options.decimal, delimiter, options.text_columns, options.fallback_decimal
    )
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
        b"x".decode(encoding, errors="replace")  # LookupError for a codec that is no text encoding (hex, zlib...)
        return codecs.lookup(encoding).name
    except LookupError as exc:
        raise UnreadableFile(path, f"'{encoding}' given is not a text encoding (try e.g. utf-8 or cp1252)") from exc


def _check_delimiter(path: Path, delimiter: str) -> str:
    delimiter = DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if delimiter in ("\n", "\r", '"'):
        raise UnreadableFile(path, f"delimiter {delimiter!r} given: a line break or quote cannot delimit fields")
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


def _convert_numbers(
    frame: pd.DataFrame,
    decimal: str | None,
    delimiter: str,
    text_columns: tuple[str, ...],
    fallback: str | None = None,
) -> tuple[str, tuple[str, ...]]:
    """Write the numbers of a file's number columns with a '.' decimal point and no thousands separators.

    A number column holds only numbers in one locale's form (placeholders such as "n/a" or "-" among them
    are left for the data contract to read as missing). The file's decimal mark is ``decimal`` (``--decimal``)
    if given; a comma-delimited file's is '.'; otherwise the values decide: a cell only a decimal comma can
    explain ("12,5", "1.234,5", "0,1234") makes it ',', one only a decimal point can explain ("12.5",
    "1,234.5") makes it '.'. With ',' the '.' (or space) thousands groups go and the comma becomes a point
    ("1.234,5" -> "1234.5"); with '.' the comma groups go ("1,234.5" -> "1234.5"). Without a mark (no such
    cell, or both kinds), columns like "1.500" or "1,500" are left as written and returned as ambiguous.
    ``text_columns`` (ids) are never touched. Returns (the mark, or "" when unknown; ambiguous columns).
    """
    candidates: dict[str, pd.Series] = {}
    only_commas = delimiter == "," and decimal is None
    for column in frame.columns:
        if column in text_columns:
            continue
        present = frame[column].dropna()
        head = present.head(200)
        if present.empty or not head.str.fullmatch(ANY_NUMBER).any() or not _numbers_or_placeholders(head):
            continue  # cheap rejection first (time columns, text)
        if only_commas and not present.str.contains(",", regex=False).any():
            continue  # a comma-delimited file: only quoted "1,234.5" needs rewriting
        is_number = present.str.fullmatch(ANY_NUMBER).to_numpy(dtype=bool)
        if not _numbers_or_placeholders(present[~is_number]):
            continue
        numbers = present[is_number]
        if numbers.str.contains(r"[.,'’\u00a0\u202f ]", regex=True).any():
            candidates[column] = numbers
    if delimiter == "," and decimal is None:
        decimal = "."
    if decimal is None:
        comma = any(n.str.contains(COMMA_ONLY, regex=True).any() for n in candidates.values())
        point = any(n.str.contains(POINT_ONLY, regex=True).any() for n in candidates.values())
        decimal = "," if comma and not point else "." if point and not comma else None
        if decimal is None and not (comma and point):
            decimal = fallback  # no cell here tells; another file of the export did
    if decimal is None:
        return "", tuple(map(str, candidates))
    pattern, groups = (EU_NUMBER, r"[.\u00a0\u202f ]") if decimal == "," else (US_NUMBER, r"[,'’\u00a0\u202f ]")
    for column, numbers in candidates.items():
        if not numbers.str.fullmatch(pattern).all():
            continue
        fixed = numbers.str.replace(groups, "", regex=True)
        if decimal == ",":
            fixed = fixed.str.replace(",", ".", regex=False)
        frame.loc[fixed.index, column] = fixed
    return decimal, ()


def _numbers_or_placeholders(values: pd.Series) -> bool:
    """Whether every value is a number (:data:`ANY_NUMBER`) or a placeholder the data contract reads as
    missing ("n/a", "-"...; checked once per distinct value)."""
    others = values[~values.str.fullmatch(ANY_NUMBER).to_numpy(dtype=bool)].unique()
    return all(category_key(value) is None for value in others)


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
