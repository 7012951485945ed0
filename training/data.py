"""The CRM data contract: loading, validation with clear errors, and the flat-export path.

A data directory holds ``leads.*``, ``outcomes.*`` and usually ``touchpoints.*`` (CSV or other delimited
text, Excel or Parquet, by extension). A single file is a flat CRM export: a leads table with a label column
and no touch log. Files are read as CRMs and spreadsheets write them (:mod:`training.reading`: delimiter,
encoding, decimal comma, Excel sheets; :mod:`training.timestamps`: one reading of each time column). Bad rows
are dropped and counted (or, in strict mode, the load fails); nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.spec import attribute_number, category_key, factorize_values, number_evidence, reads_as_numbers
from training.reading import EXCEL_EXTENSIONS, TEXT_EXTENSIONS, ReadOptions, UnreadableFile
from training.reading import read_table as read_any_table
from training.timestamps import AmbiguousDates, TimeOptions, parse_times

EXTENSIONS = (".parquet", *TEXT_EXTENSIONS, *EXCEL_EXTENSIONS)
OUTCOME_VALUES = ("won", "lost")
# Outcome values as CRMs write them, normalised by :func:`outcome_key` (Salesforce opportunity stages, lead
# conversion flags, checkboxes); a company's own stage names come with ``--won-values`` / ``--lost-values``.
WON_VALUES = frozenset(
    {"won", "closed won", "win", "converted", "closed converted", "customer", "1", "true", "yes", "y"}
)
LOST_VALUES = frozenset(
    {
        "lost",
        "closed lost",
        "loss",
        "not converted",
        "closed not converted",
        "unconverted",
        "disqualified",
        "0",
        "false",
        "no",
        "n",
    }
)
UNKNOWN_VALUES_NAMED = 10  # unknown outcome values counted each by name; the rest together
SCIENTIFIC_ID = r"^\s*[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+\s*$"
MIN_TIMESTAMP = pd.Timestamp("1970-01-01", tz="UTC")
EXAMPLES_PER_REASON = 5


def outcome_key(value: object) -> str:
    """An outcome value as compared with the vocabularies: lower case, punctuation, ``_`` and ``-`` as
    spaces, spaces collapsed ("Closed - Won" -> "closed won", "CLOSED_LOST" -> "closed lost"); a whole
    number written as a float is the integer ("1.0" -> "1")."""
    text = str(value).strip().lower()
    try:
        number = float(text)
        if number.is_integer():  # "1.0" as pandas writes a float column with blanks
            return str(int(number))
    except (ValueError, OverflowError):
        pass
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text).split())


def _outcome_keys(values: pd.Series) -> pd.Series:
    """:func:`outcome_key` of each value (NaN stays NaN), computed once per distinct value."""
    distinct = values.dropna().unique()
    return values.map(dict(zip(distinct, map(outcome_key, distinct), strict=True)))


@dataclass(frozen=True)
class InputOptions:
    """How to read input files: delimiter, encoding and Excel sheet (:class:`ReadOptions`), time columns
    (:class:`TimeOptions`), and a company's own outcome values (added to :data:`WON_VALUES` /
    :data:`LOST_VALUES`, compared by :func:`outcome_key`)."""

    read: ReadOptions = field(default_factory=ReadOptions)
    time: TimeOptions = field(default_factory=TimeOptions)
    sheets: dict[str, str] = field(default_factory=dict)  # table (file stem) -> its sheet; else ``read.sheet``
    won_values: tuple[str, ...] = ()
    lost_values: tuple[str, ...] = ()

    def won(self) -> frozenset[str]:
        """The won values: a value the user names as lost is not won, even a built-in one ("Converted")."""
        custom_lost = {outcome_key(v) for v in self.lost_values}
        return (WON_VALUES - custom_lost) | {outcome_key(v) for v in self.won_values}

    def lost(self) -> frozenset[str]:
        custom_won = {outcome_key(v) for v in self.won_values}
        return (LOST_VALUES - custom_won) | {outcome_key(v) for v in self.lost_values}


@dataclass(frozen=True)
class DataIssue:
    """One problem found in an input file: which file, which line, which column, and why."""

    file: str
    row: int | None
    column: str | None
    reason: str
    lead_id: str | None = None  # the row's lead, where a line number means nothing (a Dask partition)

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", line {self.row}"
        elif self.lead_id is not None:
            where += f", lead {self.lead_id!r}"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.reason}"


def _braced(text: str) -> str:
    """``text`` as literal text inside a :meth:`str.format` template (a file or column name with braces)."""
    return text.replace("{", "{{").replace("}", "}}")


@dataclass
class ValidationReport:
    """Counts of every dropped row by file and reason, with a few examples of each."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[DataIssue]] = field(default_factory=dict)
    rows_read: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    end_bound: pd.Timestamp | None = None  # rows dated later are dropped (see :func:`load_crm_data`)
    clock: pd.Timestamp | None = None  # the moment of training: a time after it cannot be true
    inputs: InputOptions = field(default_factory=InputOptions)
    formats: dict[str, str] = field(default_factory=dict)  # file -> how it was read
    time_readings: dict[str, str] = field(default_factory=dict)  # "file, column" -> how its times were read
    decimal: str | None = None  # the decimal mark the export's files showed first
    # a note with counts, by its text: (template, counts, first example); parts' notes add up (merge_reports)
    counted_notes: dict[str, tuple[str, tuple[int, ...], str]] = field(default_factory=dict)

    def note_counts(self, template: str, *counts: int, first: str = "") -> None:
        """Add a note that counts rows: ``template`` with ``{0:,}``, ``{1:,}``... for ``counts`` and
        ``{first}`` for the first example. The notes of parts of one table (Dask partitions) with the same
        template are one note with the counts summed and the first part's example
        (:func:`training.dask_engine.merge_reports`)."""
        text = template.format(*counts, first=first)
        self.notes.append(text)
        self.counted_notes[text] = (template, tuple(counts), first)

    def add(self, issue: DataIssue, count: int = 1) -> None:
        key = (issue.file, issue.reason)
        self.counts[key] += count
        bucket = self.examples.setdefault(key, [])
        if len(bucket) < EXAMPLES_PER_REASON:
            bucket.append(issue)

    @property
    def dropped(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """Human-readable summary: one line per (file, reason) with the first example."""
        out = []
        for (file, reason), count in sorted(self.counts.items()):
            example = self.examples[(file, reason)][0]
            out.append(f"{file}: dropped {count} row(s): {reason} (first: {example})")
        return out

    def reading_lines(self) -> list[str]:
        """How each file and each time column was read (detected or given)."""
        return [f"{file}: {how}" for file, how in self.formats.items()] + [
            f"{where}: times read as {how}" for where, how in self.time_readings.items()
        ]

    def to_dict(self) -> dict[str, object]:
        return {
            "formats": dict(self.formats),
            "time_readings": dict(self.time_readings),
            "rows_read": dict(self.rows_read),
            "dropped": {f"{f}: {r}": c for (f, r), c in sorted(self.counts.items())},
            "notes": list(self.notes),
        }


class DataValidationError(ValueError):
    """The input breaks the data contract; the message names file, line and column."""

    def __init__(self, issues: list[DataIssue]) -> None:
        self.issues = issues
        shown = "\n".join(f"  - {i}" for i in issues[:20])
        more = f"\n  ... and {len(issues) - 20} more" if len(issues) > 20 else ""
        super().__init__(f"invalid input data:\n{shown}{more}")


@dataclass(frozen=True)
class FlatExportOptions:
    """How to read a flat CRM export (one row per lead with its label, no touch log)."""

    id_column: str = "lead_id"
    label_column: str = "converted"
    positive_label: str = "1"
    time_column: str | None = None
    exclude_columns: tuple[str, ...] = ()
    close_column: str | None = None


@dataclass
class CRMData:
    """Validated CRM tables, in the contract's column names, timestamps in UTC."""

    leads: pd.DataFrame
    touchpoints: pd.DataFrame | None
    outcomes: pd.DataFrame
    report: ValidationReport
    flat: FlatExportOptions | None = None
    data_end: pd.Timestamp | None = None
    excluded_columns: tuple[str, ...] = ()

    @property
    def has_time(self) -> bool:
        """False for a flat export without a time column: no time split is possible."""
        return bool(self.leads["created_at"].notna().all()) and len(self.leads) > 0

    @property
    def end_time(self) -> pd.Timestamp:
        """The end of the data: the export time given as ``--data-end``, else the latest lead, touch or close
        time that is not after the moment of training (later rows were dropped as an error of their own)."""
        if self.data_end is not None:
            return self.data_end
        return self.latest_time()

    def latest_time(self) -> pd.Timestamp:
        """The latest lead, touch or close time in the tables."""
        candidates = [self.leads["created_at"].max()]
        if self.touchpoints is not None and len(self.touchpoints):
            candidates.append(self.touchpoints["occurred_at"].max())
        if len(self.outcomes):
            candidates.append(self.outcomes["closed_at"].max())
        return max(c for c in candidates if not pd.isna(c))

    def fingerprint(self) -> dict[str, object]:
        """Rows, wins, date ranges and a content hash: what a model was trained on."""
        digest = hashlib.sha256()
        for frame in (self.leads, self.touchpoints, self.outcomes):
            if frame is not None:
                digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        wins = int((self.outcomes["outcome"] == "won").sum())
        created = self.leads["created_at"]
        return {
            "leads": len(self.leads),
            "touchpoints": 0 if self.touchpoints is None else len(self.touchpoints),
            "outcomes": len(self.outcomes),
            "wins": wins,
            "leads_from": None if created.isna().all() else str(created.min()),
            "leads_to": None if created.isna().all() else str(created.max()),
            "data_end": None if not self.has_time else str(self.end_time),
            "sha256": digest.hexdigest(),
            "dropped_rows": self.report.dropped,
        }


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------
def find_table(directory: Path, stem: str, required: bool = True) -> Path | None:
    """``stem.parquet``, ``stem.csv`` (or ``.txt``, ``.tsv``, ``.xlsx``, ``.xls``) or a folder ``stem/`` of
    Parquet part files in ``directory``; two of them is an error (which one is meant?)."""
    found = [directory / f"{stem}{ext}" for ext in EXTENSIONS if (directory / f"{stem}{ext}").exists()]
    if (directory / stem).is_dir():  # a partitioned table: a folder of Parquet part files
        found.append(directory / stem)
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataValidationError([DataIssue(str(directory), None, None, f"more than one {stem} table ({names})")])
    if found:
        return found[0]
    if required:
        wanted = " or ".join([*(f"{stem}{ext}" for ext in EXTENSIONS), f"a folder {stem}/ of Parquet parts"])
        raise DataValidationError([DataIssue(str(directory), None, None, f"no {wanted} in this directory")])
    return None


def _is_container(value: object) -> bool:
    return isinstance(value, list | tuple | dict | set | np.ndarray)


def read_table(
    path: Path, report: ValidationReport | None = None, text_columns: tuple[str, ...] = ("lead_id", "touch_id")
) -> pd.DataFrame:
    """Read a table file as text (CSV and Excel cells; parsed later with clear errors) or Parquet, the way
    ``report.inputs.read`` says (detected by default); what was detected goes into ``report.formats``.

    Raises:
        DataValidationError: the file cannot be read (unknown type, undecodable, ragged rows, no rows...).
    """
    options = replace(report.inputs.read if report is not None else ReadOptions(), text_columns=text_columns)
    if report is not None and report.decimal is not None:
        options = replace(options, fallback_decimal=report.decimal)
    if report is not None and path.stem in report.inputs.sheets:
        options = replace(options, sheet=report.inputs.sheets[path.stem])
    try:
        frame, found = read_any_table(path, options)
    except UnreadableFile as err:
        raise DataValidationError([DataIssue(str(path), None, None, err.reason)]) from err
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object and values.map(_is_container).any():  # Parquet from a warehouse
            reason = "the column holds lists or records, not values: flatten it or leave it out with --exclude-columns"
            raise DataValidationError([DataIssue(path.name, None, str(column), reason)])
    if report is not None:
        if found.decimal in (",", ".") and report.decimal is None:
            report.decimal = found.decimal  # the export's mark, for its files that do not show one
        report.formats[path.name] = found.describe()
        ignored = [f"--{name}" for name in ("delimiter", "encoding", "decimal") if getattr(options, name)]
        if found.kind != "csv" and ignored:
            report.formats[path.name] += f" ({' and '.join(ignored)} do not apply to it)"
    return frame


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write CSV or Parquet by the extension of ``path``."""
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"unsupported file type: {path}")


# ---------------------------------------------------------------------------------------------
# Validation steps
# ---------------------------------------------------------------------------------------------
class _Checker:
    """Collects the bad rows of one file; the file's line numbers count the header as line 1."""

    def __init__(
        self, frame: pd.DataFrame, name: str, report: ValidationReport, strict: bool, by_lead: bool = False
    ) -> None:
        self.frame = frame
        self.name = name
        self.report = report
        self.strict = strict
        self.by_lead = by_lead  # rows named by their lead id, not a line (a partition's lines are not the file's)
        self.bad = np.zeros(len(frame), dtype=bool)
        self.issues: list[DataIssue] = []

    def issue(self, position: int, column: str | None, reason: str) -> DataIssue:
        """The issue of the row at ``position``: its line (the header is line 1), or its lead id when
        ``by_lead`` (None when the id is blank)."""
        if not self.by_lead:
            return DataIssue(self.name, position + 2, column, reason)
        lead = self.frame["lead_id"].iloc[position] if "lead_id" in self.frame.columns else None
        text = None if lead is None or pd.isna(lead) or not str(lead).strip() else str(lead).strip()
        return DataIssue(self.name, None, column, reason, lead_id=text)

    def where(self, position: int) -> str:
        """The row at ``position`` in words: "line 7" or "lead 'L1'"."""
        issue = self.issue(position, None, "")
        return f"line {issue.row}" if issue.row is not None else f"lead {issue.lead_id!r}"

    def require_columns(self, columns: tuple[str, ...]) -> None:
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            have = ", ".join(map(str, self.frame.columns[:20]))
            read = self.report.formats.get(self.name)
            have += f"; read as {read}: check --delimiter, --encoding or --sheet" if read else ""
            raise DataValidationError(
                [
                    DataIssue(self.name, None, c, f"required column is missing (columns present: {have})")
                    for c in missing
                ]
            )

    def flag(self, mask: np.ndarray, column: str | None, reason: str) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.bad
        if not mask.any():
            return
        positions = np.flatnonzero(mask)
        self.report.add(self.issue(int(positions[0]), column, reason), int(mask.sum()))
        self.issues += [self.issue(int(p), column, reason) for p in positions[:EXAMPLES_PER_REASON]]
        self.bad |= mask

    def parse_time(
        self, column: str, *, optional: bool = False, shown: str | None = None, flag_after_end: bool = True
    ) -> pd.Series:
        """Parse a timestamp column to UTC, one reading for the whole column (:func:`parse_times`: naive
        times are in ``--timezone``); flag unparseable and out-of-range values (times after the end of the
        data only with ``flag_after_end``).

        Raises:
            DataValidationError: day-first or month-first cannot be told from the values, or a time option
                (``--timezone``, ``--date-format``) is invalid.
        """
        raw = self.frame[column]
        column = shown or column
        missing = _blank(raw)
        try:
            parsed_times = parse_times(raw, file=self.name, column=column, options=self.report.inputs.time)
        except AmbiguousDates as err:
            raise DataValidationError([DataIssue(self.name, None, column, str(err).split(": ", 1)[-1])]) from err
        except (ValueError, TypeError) as err:  # an invalid option, or values no reading can hold together
            option = str(err).startswith("--")  # the option is named in the message already
            reason = str(err) if option else f"cannot read the times ({err}); give their format with --date-format"
            raise DataValidationError([DataIssue(self.name, None, column, reason)]) from err
        parsed = parsed_times.values
        if not pd.api.types.is_datetime64_any_dtype(raw):
            self.report.time_readings[f"{self.name}, column '{column}'"] = parsed_times.reading
        unparseable = parsed.isna().to_numpy() & ~missing
        self.flag(unparseable, column, f"unparseable timestamp (the column is read as {parsed_times.reading})")
        if not optional:
            self.flag(missing, column, "missing timestamp")
        self.flag((parsed < MIN_TIMESTAMP).to_numpy(), column, "timestamp before 1970")
        bound = self.report.end_bound
        if bound is not None and flag_after_end:
            self.flag((parsed > bound).to_numpy(), column, f"dated after the end of the data ({bound.isoformat()})")
        return parsed

    def optional_number(self, column: str) -> pd.Series:
        """An optional number column (a touch's ``value``, an outcome's ``amount``) as float: placeholders
        ("n/a", "-") are missing, amounts with a currency read as numbers ("$7,000.00", "7.000,00 €"; see
        :func:`money_number`); a value that is no number is missing too, and counted in a note (the row is
        kept: the value is optional)."""
        raw = self.frame[column]
        if pd.api.types.is_numeric_dtype(raw):
            numbers = pd.to_numeric(raw, errors="coerce").astype(float)
        else:
            distinct = raw.dropna().unique()
            numbers = raw.map(dict(zip(distinct, map(money_number, distinct), strict=True))).astype(float)
        unread = numbers.isna().to_numpy() & ~_blank(raw)  # then: not a placeholder either
        if unread.any():
            unread[unread] = ~raw[unread].map(category_key).isna().to_numpy()
        numbers = numbers.where(np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan)))
        if unread.any():
            first = int(np.flatnonzero(unread)[0])
            self.report.note_counts(
                f"{_braced(self.name)}, column '{_braced(column)}': {{0:,}} value(s) are not numbers and are read "
                "as missing (first: {first}); the rows are kept",
                int(unread.sum()),
                first=f"{self.where(first)}, {str(raw.iloc[first])!r}",
            )
        return numbers

    def lead_ids(self, column: str = "lead_id", shown: str | None = None) -> pd.Series:
        """The column's ids as text (leading zeros kept, surrounding spaces removed; whole numbers from
        Parquet without a decimal point); flags blanks and ids a spreadsheet turned into numbers in scientific
        notation (``4.687E+11``: rounded, so joins on them would be wrong)."""
        raw = self.frame[column]
        if pd.api.types.is_float_dtype(raw):
            whole = raw.notna() & (raw == np.floor(raw))
            ids = raw.astype(object).where(~whole, raw[whole].astype("int64").astype(str)).astype(str)
        else:
            ids = raw.astype(str).str.strip()
        shown = shown or column
        if self.report.formats.get(self.name, "").startswith("Excel"):
            long_numbers = int(ids.str.fullmatch(r"\d{16,}").fillna(False).sum())
            if long_numbers:
                self.report.notes.append(
                    f"{self.name}, column '{shown}': {long_numbers:,} id(s) of 16 or more digits in a workbook; a "
                    "number cell keeps only 15 significant digits, so if they were stored as numbers they were "
                    "rounded (store ids as text)"
                )
        self.flag(_blank(raw), shown, "missing lead id")
        maybe = ids.str.contains("e", case=False, regex=False).fillna(False).to_numpy(dtype=bool)  # cheap first
        scientific = np.zeros(len(ids), dtype=bool)
        scientific[maybe] = ids[maybe].str.fullmatch(SCIENTIFIC_ID).fillna(False).to_numpy(dtype=bool)
        self.flag(
            scientific,
            shown,
            "id in scientific notation (a spreadsheet turned it into a rounded number; export ids as text)",
        )
        return ids

    def finish(self) -> pd.DataFrame:
        self.report.rows_read[self.name] = len(self.frame)
        if self.strict and self.issues:
            raise DataValidationError(self.issues)
        return self.frame.loc[~self.bad].reset_index(drop=True)


_CURRENCY = re.compile(r"[$€£¥₹]|\b[A-Z]{3}\b|\s|\u00a0|\u202f|'|’")


def money_number(value: object) -> float:
    """A number as an amount is written: currency signs and codes, spaces and apostrophes dropped ("$7,000.00",
    "USD 7,000.00", "7.000,00 €", "1'234.50"); with both '.' and ',' the last is the decimal mark; a lone ','
    before exactly three digits groups thousands ("7,000"), another lone ',' is a decimal comma ("12,5").
    NaN when it is no number (placeholders too)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = _CURRENCY.sub("", str(value))
    if "," in text and "." in text:
        text = text.replace(".", "").replace(",", ".") if text.rfind(",") > text.rfind(".") else text.replace(",", "")
    elif "," in text:
        text = text.replace(",", "") if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", text) else text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return math.nan


def same_day_close(
    closed: pd.Series, created: pd.Series, report: ValidationReport, name: str, column: str
) -> pd.Series:
    """A close written as a date only (midnight, local time in ``--timezone``) on the day the lead was
    created is taken as at creation, not as before it (CRMs store a conversion date without its time); the
    number of such closes is noted. Other closes before creation stay as they are (and are refused)."""
    local = closed.dt.tz_convert(report.inputs.time.timezone)
    midnight = local.notna() & (local == local.dt.normalize())
    same_day = created.notna() & (
        local.dt.normalize() == created.dt.tz_convert(report.inputs.time.timezone).dt.normalize()
    )
    moved = (midnight & same_day & (closed < created)).to_numpy(dtype=bool)
    if moved.any():
        report.note_counts(
            f"{_braced(name)}, column '{_braced(column)}': {{0:,}} close date(s) without a time, on the day the "
            "lead was created, are taken as at creation",
            int(moved.sum()),
        )
        closed = closed.where(~moved, created)
    return closed


def _blank(series: pd.Series) -> np.ndarray:
    """Missing, or text that is empty once stripped. A time, number or boolean column holds no text: only
    its missing values are blank (formatting each value as text to compare it with "" took most of the
    validation of a Parquet table's times)."""
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):  # bool included
        return series.isna().to_numpy()
    return (series.isna() | (series.astype(str).str.strip() == "")).to_numpy()


def validate_leads(
    frame: pd.DataFrame, name: str, report: ValidationReport, strict: bool, *, by_lead: bool = False
) -> pd.DataFrame:
    """Leads need a non-blank unique ``lead_id`` and a parseable ``created_at``. ``by_lead``: the examples
    of dropped rows name their lead, not a line (for a part of a table whose lines are not the file's)."""
    check = _Checker(frame, name, report, strict, by_lead)
    check.require_columns(("lead_id", "created_at"))
    ids = check.lead_ids()
    created = check.parse_time("created_at")
    check.flag(ids.duplicated(keep="first").to_numpy(), "lead_id", "duplicate lead_id (first row kept)")
    frame = frame.assign(lead_id=ids, created_at=created)
    check.frame = frame
    return check.finish()


def validate_touchpoints(
    frame: pd.DataFrame,
    name: str,
    leads: pd.DataFrame,
    report: ValidationReport,
    strict: bool,
    *,
    by_lead: bool = False,
) -> pd.DataFrame:
    """Touches need a known lead, a parseable ``occurred_at`` and a ``touch_type``; ``value`` is numeric.

    Every kept row is a touch, even one equal to another (two calls on one date in a date-only export are
    two touches). With a ``touch_id`` column, a row repeating the id of an earlier good row is a re-sent
    touch: dropped and counted (rows with a blank id are all kept). Without one, re-sent rows cannot be told
    from distinct touches: all count, and the rows equal to another in every column are noted in the report.
    ``by_lead`` as :func:`validate_leads`.
    """
    check = _Checker(frame, name, report, strict, by_lead)
    check.require_columns(("lead_id", "occurred_at", "touch_type"))
    occurred = check.parse_time("occurred_at")
    check.flag(_blank(frame["touch_type"]), "touch_type", "missing touch_type")
    ids = check.lead_ids()
    known = pd.Index(leads["lead_id"]).get_indexer(ids) >= 0  # a hash join; isin on text is far slower
    check.flag(~known, "lead_id", "touch point for an unknown lead")
    updates: dict[str, Any] = {"lead_id": ids, "occurred_at": occurred}
    if "value" in frame.columns:
        updates["value"] = check.optional_number("value")
    for optional in ("channel", "campaign"):
        if optional not in frame.columns:
            updates[optional] = pd.Series([None] * len(frame), dtype=object)
    if "touch_id" in frame.columns:  # last: the first good row of an id is the one kept
        touch_id = frame["touch_id"].astype(str).str.strip()
        named = ~_blank(frame["touch_id"]) & ~check.bad
        repeated = np.zeros(len(frame), dtype=bool)
        repeated[named] = touch_id[named].duplicated(keep="first").to_numpy()
        check.flag(repeated, "touch_id", "duplicate touch_id (first row kept)")
    check.frame = frame.assign(**updates)
    kept = check.finish()
    if "touch_id" not in frame.columns and len(kept):
        equal = kept.duplicated(keep=False)
        if equal.any():
            repeats = int(kept.duplicated(keep="first").sum())
            report.note_counts(
                f"{_braced(name)}: {{0:,}} row(s) equal another row in every column ({{1:,}} repeat an earlier "
                "row); all count as touches (add a touch_id column to have re-sent rows dropped)",
                int(equal.sum()),
                repeats,
            )
    return kept


def validate_outcomes(
    frame: pd.DataFrame,
    name: str,
    leads: pd.DataFrame | None,
    report: ValidationReport,
    strict: bool,
    *,
    by_lead: bool = False,
) -> pd.DataFrame:
    """Outcomes are won or lost (:data:`WON_VALUES` / :data:`LOST_VALUES` and the ``--won-values`` /
    ``--lost-values`` of ``report.inputs``, stored as ``won``/``lost``) for a known lead, closed no earlier
    than the lead was created. Values that are neither are counted by value.

    With ``leads`` None (outcomes imported on their own, ``leadscore outcomes import``), any lead id is taken
    and every row is kept in file order: a lead's later row is a correction of its earlier one. ``by_lead``
    as :func:`validate_leads`.
    """
    check = _Checker(frame, name, report, strict, by_lead)
    check.require_columns(("lead_id", "outcome", "closed_at"))
    ids = check.lead_ids()
    if leads is None:  # taken as POST /v1/outcomes takes them: ids of 1 to 200 characters, no control character
        control = ids.str.contains(r"[\x00-\x1f\x7f]", regex=True).fillna(False).to_numpy(dtype=bool)
        check.flag(control, "lead_id", "a lead id has no control characters")
    closed = check.parse_time("closed_at")
    key = _outcome_keys(frame["outcome"])
    won_values, lost_values = report.inputs.won(), report.inputs.lost()
    is_won, is_lost = key.isin(won_values).to_numpy(), key.isin(lost_values).to_numpy()
    check.flag(_blank(frame["outcome"]), "outcome", "missing outcome")
    unknown = ~is_won & ~is_lost & ~_blank(frame["outcome"])
    if unknown.any():
        raw = frame["outcome"].astype(str).str.strip()
        counts = raw[unknown].value_counts()
        for value in counts.index[:UNKNOWN_VALUES_NAMED]:
            check.flag(
                unknown & (raw == value).to_numpy(),
                "outcome",
                f"unknown outcome value {value!r} (known: won, lost, Closed Won, Closed Lost, converted, 1/0, "
                "true/false...; name your own with --won-values / --lost-values)",
            )
        check.flag(unknown, "outcome", "other unknown outcome values (see --won-values / --lost-values)")
    outcome = pd.Series(np.where(is_won, "won", "lost"), index=frame.index)
    if leads is not None:
        lookup = leads.set_index("lead_id")["created_at"]
        # no valid lead (a partition of the Dask engine): pandas cannot map through an empty time series
        created = ids.map(lookup) if len(lookup) else pd.Series(pd.NaT, index=ids.index, dtype=lookup.dtype)
        check.flag(created.isna().to_numpy(), "lead_id", "outcome for an unknown lead")
        closed = same_day_close(closed, pd.to_datetime(created, utc=True), report, name, "closed_at")
        check.flag(
            (closed < created).fillna(False).to_numpy(dtype=bool),
            "closed_at",
            "outcome dated before the lead was created",
        )
        check.flag(ids.duplicated(keep="first").to_numpy(), "lead_id", "second outcome for the same lead (first kept)")
    updates: dict[str, Any] = {"lead_id": ids, "outcome": outcome, "closed_at": closed}
    if "amount" in frame.columns:
        updates["amount"] = check.optional_number("amount")
        check.flag((updates["amount"] < 0).fillna(False).to_numpy(dtype=bool), "amount", "negative amount")
    if leads is None:  # imported on their own: the limits of POST /v1/outcomes
        check.flag(
            (ids.astype(str).str.len() > MAX_LEAD_ID).to_numpy(), "lead_id", f"lead id over {MAX_LEAD_ID} characters"
        )
    check.frame = frame.assign(**updates)
    return check.finish()


MAX_LEAD_ID = 200  # as the API takes them


def load_outcomes(
    path: str | Path, *, strict: bool = False, inputs: InputOptions | None = None, now: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read an outcomes file of the data contract (lead_id, outcome, closed_at, amount?) on its own.

    Returns:
        The valid rows (outcome ``won``/``lost``, ``closed_at`` in UTC, ``amount`` as float when present) in
        file order, and the report of every row dropped (closed after ``now`` included) and how it was read.

    Raises:
        DataValidationError: the file is missing or unreadable, a required column is missing, or (strict)
            any row is bad.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError([DataIssue(str(path), None, None, "no such file")])
    report = ValidationReport(end_bound=_now(now), inputs=inputs or InputOptions())
    frame = validate_outcomes(read_table(path, report), path.name, None, report, strict)
    return frame, report


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def load_crm_data(
    path: str | Path,
    *,
    flat: FlatExportOptions | None = None,
    strict: bool = False,
    exclude_columns: tuple[str, ...] = (),
    data_end: pd.Timestamp | str | None = None,
    now: pd.Timestamp | None = None,
    inputs: InputOptions | None = None,
    attribute_types: Mapping[str, bool] | None = None,
) -> CRMData:
    """Load and validate CRM data from a directory of tables or a single flat export file.

    Args:
        path: a directory with ``leads.*``, ``outcomes.*`` and optionally ``touchpoints.*``, or one file
            (a flat export, read with ``flat`` or the default :class:`FlatExportOptions`).
        flat: how to read a flat export.
        strict: fail on the first bad rows instead of dropping and counting them.
        exclude_columns: lead attribute columns to leave out (any data shape; unknown names are an error).
        data_end: the export time: rows dated later are dropped as "dated after the end of the data" (an
            error kind of its own); it cannot be after ``now``. By default the latest time in the data that
            is not after ``now``.
        now: the moment of training (default: the clock), the bound when ``data_end`` is not given.
        inputs: how to read the files (delimiter, encoding, sheet, time columns, outcome values); detected
            by default, and what was detected is in ``report.formats`` and ``report.time_readings``.
        attribute_types: column -> numeric, for data to be scored: the model's reading of its attribute
            columns (:attr:`features.spec.FeatureSpec.attribute_types`), so that a column the model reads as
            categories is not read as numbers because the rows scored happen to be ("true" stays "true", not
            1.0). Other text columns are typed by their values.

    Returns:
        Validated tables, the end of the data, and a report of every dropped row.

    Raises:
        DataValidationError: a required file or column is missing or unreadable, ``data_end`` is after
            ``now``, an excluded column does not exist, a time column reads both day-first and month-first,
            or (strict) any row is bad.
    """
    path = Path(path)
    if not path.exists():
        raise DataValidationError([DataIssue(str(path), None, None, "no such file or directory")])
    timezone = (inputs or InputOptions()).time.timezone
    explicit_end = None if data_end is None else export_time(data_end, now, timezone)
    report = ValidationReport(
        end_bound=explicit_end if explicit_end is not None else _now(now),
        clock=_now(now),
        inputs=inputs or InputOptions(),
    )
    excluded = tuple(dict.fromkeys((*(flat.exclude_columns if flat else ()), *exclude_columns)))
    if path.is_file():
        options = flat or FlatExportOptions()
        data = load_flat_export(
            path,
            replace(options, exclude_columns=excluded),
            strict=strict,
            report=report,
            attribute_types=attribute_types,
        )
    else:
        data = _load_directory(path, report, strict, excluded, attribute_types)
    if len(data.leads) == 0:
        read = ", ".join(f"{name}: {rows:,} rows read" for name, rows in report.rows_read.items())
        raise DataValidationError(
            [
                DataIssue(
                    str(path),
                    None,
                    None,
                    f"no valid lead is left ({read})" + "".join(f"; {line}" for line in report.lines()),
                )
            ]
        )
    if data.has_time or data.touchpoints is not None:
        data.data_end = explicit_end if explicit_end is not None else data.latest_time()
        _note_a_late_end(data)
    return data


def merge_outcomes(data: CRMData, received: pd.DataFrame) -> tuple[CRMData, list[str]]:
    """The export's outcomes with those received through the API (``POST /v1/outcomes``) merged in.

    A received outcome replaces the export's for the same lead when it closed no earlier than the export's (a
    lost deal later won, a corrected date); an export that knows of a later close keeps its own. Received
    outcomes are left out, and counted by reason, for leads not in the export, closed after the end of the
    data (the export holds nothing of what happened after it: the labels would run ahead of the touches),
    closed before the lead was created, or closed before the export's own outcome of the lead.

    Args:
        data: the loaded export.
        received: each lead's latest outcome received: lead_id, outcome (won/lost), closed_at (UTC), amount.

    Returns:
        The data with merged outcomes, and one line per count (for the run's notes).
    """
    if received.empty:
        return data, ["outcomes received through the API: none"]
    got = received.assign(
        lead_id=received["lead_id"].astype(str), closed_at=pd.to_datetime(received["closed_at"], utc=True)
    )
    created = got["lead_id"].map(data.leads.set_index("lead_id")["created_at"])
    unknown = ~got["lead_id"].isin(data.leads["lead_id"])
    late = ~unknown & (got["closed_at"] > data.end_time) if data.has_time else pd.Series(False, index=got.index)
    early = ~unknown & ~late & (got["closed_at"] < created).fillna(False)
    export = data.outcomes[["lead_id", "outcome", "closed_at"]]
    export_close = got["lead_id"].map(export.set_index("lead_id")["closed_at"])
    older = ~unknown & ~late & ~early & (got["closed_at"] < export_close).fillna(False)
    usable = got[~unknown & ~late & ~early & ~older]
    prior = usable[["lead_id", "outcome", "closed_at"]].merge(
        export, on="lead_id", how="left", suffixes=("", "_export")
    )
    had = prior["outcome_export"].notna()
    same = had & (prior["outcome"] == prior["outcome_export"]) & (prior["closed_at"] == prior["closed_at_export"])
    replaced, added = int((had & ~same).sum()), int((~had).sum())
    columns = [c for c in data.outcomes.columns if c in usable.columns]
    kept = data.outcomes[~data.outcomes["lead_id"].isin(usable["lead_id"])]
    merged = pd.concat([kept, usable[columns]], ignore_index=True)
    lines = [
        f"outcomes received through the API: {len(got):,}; {added:,} added, {replaced:,} replace the export's, "
        f"{int(same.sum()):,} equal the export's",
        *(
            f"outcomes received through the API left out: {n:,} {why}"
            for n, why in (
                (int(unknown.sum()), "for leads not in the export"),
                (int(late.sum()), f"closed after the end of the data ({data.end_time.isoformat()})"),
                (int(early.sum()), "closed before the lead was created"),
                (int(older.sum()), "closed before the export's own outcome of the lead (the export's is later)"),
            )
            if n
        ),
    ]
    return replace(data, outcomes=merged), lines


LATE_END_DAYS = 28


def _note_a_late_end(data: CRMData) -> None:
    """Say so when the end of the data lies weeks after the latest lead: one wrong date (a touch or close typed
    in the future, but not after today) would otherwise silently censor recent leads and thin the inflow."""
    if not data.has_time or data.data_end is None:
        return
    latest_lead = data.leads["created_at"].max()
    gap = (data.data_end - latest_lead).days
    if gap > LATE_END_DAYS:
        data.report.notes.append(
            f"the end of the data ({data.data_end.isoformat()}) is {gap} days after the latest lead was created "
            f"({latest_lead.isoformat()}): if a row carries a wrong date, give --data-end with the export time"
        )


def _now(now: pd.Timestamp | None) -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")


CLOCK_WORDS = ("now", "today")  # pandas reads both as the local wall clock's time, with no zone


def one_time(value: pd.Timestamp | str, what: str, timezone: str = "UTC") -> pd.Timestamp:
    """One timestamp in UTC: ``now`` (or ``today``, which pandas reads as the same instant) is the clock's
    time (pandas alone reads it as the local wall clock, with no zone); a time without an offset is in
    ``timezone`` (the ``--timezone`` of the data: UTC by default). A clear error names ``what`` when it cannot
    be read."""
    if isinstance(value, str) and value.strip().lower() in CLOCK_WORDS:
        return pd.Timestamp.now(tz="UTC")
    try:
        stamp = pd.to_datetime(value, format="ISO8601") if isinstance(value, str) else pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        reason = f"cannot read {value!r} as an ISO 8601 time (e.g. 2026-05-01 or 2026-05-01T09:30:00Z)"
        raise DataValidationError([DataIssue(what, None, None, reason)]) from err
    if pd.isna(stamp):
        raise DataValidationError([DataIssue(what, None, None, f"cannot read {value!r} as a time")])
    if stamp.tzinfo is not None:
        return stamp.tz_convert("UTC")
    try:
        return stamp.tz_localize(timezone).tz_convert("UTC")
    except Exception as err:  # a time the zone skips or repeats (a DST change), or an unknown zone
        reason = f"cannot place {value!r} in the time zone {timezone!r} ({err}); give an offset, e.g. +01:00"
        raise DataValidationError([DataIssue(what, None, None, reason)]) from err


def export_time(value: pd.Timestamp | str, now: pd.Timestamp | None = None, timezone: str = "UTC") -> pd.Timestamp:
    """``--data-end``, the time the export was taken, in UTC (``now``: the clock; without an offset: in
    ``timezone``, as the data's own times are read).

    Raises:
        DataValidationError: it cannot be read, or it is after ``now`` (the moment of training; default the
            clock): an export cannot have been taken later, and every lead whose horizon ends after ``now``
            would be labelled "not won" without its horizon having been observed.
    """
    clock = _now(now)
    if isinstance(value, str) and value.strip().lower() in CLOCK_WORDS:
        return clock
    end = one_time(value, "--data-end", timezone)
    if end > clock:
        reason = (
            f"{end.isoformat()} is after the moment of training ({clock.isoformat()}): the export cannot have been "
            "taken later, and leads whose horizon ends after now would count as not won; give the time the "
            "export was taken"
        )
        raise DataValidationError([DataIssue("--data-end", None, None, reason)])
    return end


def _exclude(frame: pd.DataFrame, name: str, excluded: tuple[str, ...], protected: tuple[str, ...]) -> pd.DataFrame:
    """Drop the excluded attribute columns; naming a column the file lacks (or a key column) is an error."""
    bad = [
        DataIssue(name, None, c, "excluded column does not exist in the file")
        for c in excluded
        if c not in frame.columns
    ]
    bad += [
        DataIssue(name, None, c, "a key, time or label column cannot be excluded") for c in excluded if c in protected
    ]
    if bad:
        raise DataValidationError(bad)
    return frame.drop(columns=list(excluded))


def _load_directory(
    path: Path,
    report: ValidationReport,
    strict: bool,
    excluded: tuple[str, ...],
    attribute_types: Mapping[str, bool] | None = None,
) -> CRMData:
    leads_path = find_table(path, "leads")
    outcomes_path = find_table(path, "outcomes")
    touches_path = find_table(path, "touchpoints", required=False)
    assert leads_path is not None and outcomes_path is not None
    raw_leads = _exclude(read_table(leads_path, report), leads_path.name, excluded, ("lead_id", "created_at"))
    # a folder of part files has no lines of its own: its dropped rows are named by their lead
    leads = validate_leads(raw_leads, leads_path.name, report, strict, by_lead=leads_path.is_dir())
    if len(leads) == 0:
        return CRMData(leads=leads, touchpoints=None, outcomes=leads.iloc[:0], report=report)
    touchpoints = None
    if touches_path is not None:
        touchpoints = validate_touchpoints(
            read_table(touches_path, report), touches_path.name, leads, report, strict, by_lead=touches_path.is_dir()
        )
    else:
        report.notes.append("no touchpoints file: models learn from lead attributes alone")
    outcomes = validate_outcomes(
        read_table(outcomes_path, report), outcomes_path.name, leads, report, strict, by_lead=outcomes_path.is_dir()
    )
    leads = _type_attributes(leads, leads_path.name, attribute_types)
    return CRMData(leads=leads, touchpoints=touchpoints, outcomes=outcomes, report=report, excluded_columns=excluded)


def load_flat_export(
    path: Path,
    options: FlatExportOptions,
    *,
    strict: bool = False,
    report: ValidationReport | None = None,
    attribute_types: Mapping[str, bool] | None = None,
) -> CRMData:
    """Read a flat export: one row per lead with its label and no touch log.

    The label column becomes an outcome (``won`` when it equals ``positive_label``), closed at the
    ``close_column`` time when the export has one; the excluded columns are dropped here and recorded with
    the model. Without a time column ``created_at`` is missing and training falls back to a stratified
    random split.
    """
    report = report if report is not None else ValidationReport()
    frame = read_table(path, report, text_columns=(options.id_column,))
    name = path.name
    keys = tuple(c for c in (options.id_column, options.label_column, options.time_column, options.close_column) if c)
    frame = _exclude(frame, name, options.exclude_columns, keys)
    _Checker(frame, name, report, strict).require_columns(keys)
    label = frame[options.label_column]
    renamed = frame.drop(columns=[options.label_column]).rename(columns={options.id_column: "lead_id"})
    if options.time_column:
        renamed = renamed.rename(columns={options.time_column: "created_at"})
    else:
        renamed["created_at"] = pd.Series(pd.NaT, index=renamed.index, dtype="datetime64[ns, UTC]")
        report.notes.append(f"{name}: no time column, so no time split is possible; a stratified random split is used")
    check = _Checker(renamed, name, report, strict)
    ids = check.lead_ids("lead_id", shown=options.id_column)
    check.flag(_blank(label), options.label_column, "missing label")
    if options.time_column:
        renamed["created_at"] = check.parse_time("created_at", shown=options.time_column)
    won = flat_label_won(label, options, report, name)
    if options.close_column:
        # A conversion after the --data-end given (but not after the moment of training) was not known at the
        # export time: the lead stays, not converted by then (as a data directory drops only its outcome row).
        # A close after the moment of training cannot be true (a typo): dropped and counted as any later row;
        # strict mode refuses both.
        closed = check.parse_time(options.close_column, optional=True, flag_after_end=strict)
        bound = report.end_bound
        if bound is not None and not strict:
            clock = max(bound, report.clock) if report.clock is not None else bound
            check.flag(
                (closed > clock).fillna(False).to_numpy(dtype=bool),
                options.close_column,
                f"dated after the end of the data ({bound.isoformat()})"
                if clock == bound
                else f"dated after the moment of training ({clock.isoformat()})",
            )
            late = (closed > bound).fillna(False).to_numpy(dtype=bool) & ~check.bad
            if late.any():
                report.notes.append(
                    f"{name}: {int(late.sum()):,} lead(s) closed after the end of the data ({bound.isoformat()}) "
                    f"in '{options.close_column}': kept as not converted by then (first: "
                    f"{check.where(int(np.flatnonzero(late)[0]))})"
                )
                closed = closed.where(~late)
                won = won & ~late
        closed = same_day_close(closed, renamed["created_at"], report, name, options.close_column)
        dated_not_won = closed.notna().to_numpy() & ~won
        if dated_not_won.any():
            values = label[dated_not_won].astype(str).str.strip().value_counts().head(UNKNOWN_VALUES_NAMED)
            report.notes.append(
                f"{name}: {int(dated_not_won.sum()):,} row(s) have a '{options.close_column}' but a label that does "
                f"not mean converted ({', '.join(f'{v!r} {c:,}' for v, c in values.items())}); if they converted, "
                "name the values with --won-values"
            )
        check.flag(
            (closed < renamed["created_at"]).fillna(False).to_numpy(dtype=bool),
            options.close_column,
            "closed before the lead was created",
        )
        renamed = renamed.drop(columns=[options.close_column]).assign(__closed=closed)
    else:
        renamed["__closed"] = pd.Series(pd.NaT, index=renamed.index, dtype="datetime64[ns, UTC]")
    check.flag(ids.duplicated(keep="first").to_numpy(), options.id_column, "duplicate lead id (first row kept)")
    renamed["lead_id"] = ids
    renamed["__won"] = won
    check.frame = renamed
    kept = check.finish()
    outcomes = pd.DataFrame(
        {
            "lead_id": kept["lead_id"],
            "outcome": np.where(kept["__won"], "won", "lost"),
            "closed_at": kept["__closed"].astype("datetime64[ns, UTC]"),
        }
    )
    leads = _type_attributes(kept.drop(columns=["__won", "__closed"]), name, attribute_types)
    leads = leads[["lead_id", "created_at", *[c for c in leads.columns if c not in ("lead_id", "created_at")]]]
    return CRMData(
        leads=leads,
        touchpoints=None,
        outcomes=outcomes,
        report=report,
        flat=options,
        excluded_columns=options.exclude_columns,
    )


def flat_label_won(label: pd.Series, options: FlatExportOptions, report: ValidationReport, name: str) -> np.ndarray:
    """Which rows of a flat export's label column mean converted: the value ``positive_label`` (compared by
    :func:`outcome_key`, so "TRUE" is "true"), the ``--won-values``, and, when ``positive_label`` is itself a
    common won value (``1``, ``true``, ``yes``, ``converted``...), all of :data:`WON_VALUES`. Every other value
    means not converted; the values counted each way are noted (values that are in neither vocabulary by
    name), so that a label read the wrong way shows."""
    key = _outcome_keys(label)
    positive = outcome_key(options.positive_label)
    won_values = {positive} | {outcome_key(v) for v in report.inputs.won_values}
    if positive in WON_VALUES:
        won_values |= WON_VALUES
    won = key.isin(won_values).to_numpy()
    present = key.notna().to_numpy()

    def values(mask: np.ndarray) -> str:
        counts = label[mask].astype(str).str.strip().value_counts()
        shown = ", ".join(f"{v!r} {c:,}" for v, c in counts.iloc[:UNKNOWN_VALUES_NAMED].items())
        return shown + (f" and {len(counts) - UNKNOWN_VALUES_NAMED} more values" if len(counts) > 10 else "")

    report.notes.append(
        f"{name}, column '{options.label_column}': {int(won.sum()):,} converted ({values(won)}); "
        f"{int((present & ~won).sum()):,} not converted ({values(present & ~won) or 'none'})"
    )
    neither = present & ~won & ~key.isin(report.inputs.lost()).to_numpy()
    if neither.any():
        report.notes.append(
            f"{name}, column '{options.label_column}': {int(neither.sum()):,} value(s) are neither a known won nor "
            f"a known lost value and count as not converted ({values(neither)}); if some mean converted, name "
            "them with --won-values"
        )
    return won


def _text_attribute(leads: pd.DataFrame, col: str) -> bool:
    """Whether ``col`` is an attribute column that :func:`_type_attributes` reads (text, not numbers or
    booleans already)."""
    series = leads[col]
    return col not in ("lead_id", "created_at") and not (
        pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
    )


def attribute_evidence(leads: pd.DataFrame) -> dict[str, tuple[bool, bool]]:
    """Per text attribute column of ``leads``, its :func:`~features.spec.number_evidence` ``(numbers,
    other)``. Parts of one table (partitions) combine by ``or``; the result given to :func:`_type_attributes`
    as ``numeric`` (``numbers and not other``) reads each column as one reading of the whole table would."""
    return {
        col: number_evidence(factorize_values(leads[col])[1]) for col in leads.columns if _text_attribute(leads, col)
    }


def _type_attributes(
    leads: pd.DataFrame, name: str = "leads", numeric: Mapping[str, bool] | None = None
) -> pd.DataFrame:
    """Read each attribute column once, by the one reading the features use (:mod:`features.spec`).

    A text column whose values all spell numbers (booleans, blanks and placeholders such as ``Select`` may
    be among them; :func:`~features.spec.reads_as_numbers`) becomes float, read by
    :func:`~features.spec.attribute_number`; any other text column holds its values' category keys
    (:func:`~features.spec.category_key`: " Software " -> "software", "TRUE" -> "true", ``Select`` -> None).
    Numeric and boolean columns (Parquet) are left as they are: the features read them the same way.
    ``numeric`` (column -> whether it is numeric) overrides what ``leads`` alone show, for a part of a table
    (one partition) read as the whole table is (:func:`attribute_evidence`).
    """
    out = leads.copy()
    for col in out.columns:
        if not _text_attribute(out, col):
            continue
        codes, distinct = factorize_values(out[col])
        if numeric[col] if numeric is not None and col in numeric else reads_as_numbers(distinct):
            numbers = np.array([attribute_number(v) for v in distinct] + [np.nan], dtype=np.float64)
            out[col] = pd.Series(numbers[codes], index=out.index)
        else:
            keys = np.array([category_key(v) for v in distinct] + [None], dtype=object)
            out[col] = pd.Series(keys[codes], index=out.index, dtype=object)
    return out
