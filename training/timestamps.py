"""Timestamp columns of CRM exports, each read one way: ISO 8601, day- or month-first dates, year-first dates
(``2025/12/31``), dates with month names (``Dec 31, 2025``, ``31-Dec-2025``), epoch numbers or Excel serial days.

A column is never read two ways. Its kind is decided on a sample of its values; day-first against month-first
on all of them (day-first when some first part is above 12, month-first when some second part is). Values that
do not fit the column's reading become NaT, for the caller to count as unparseable. Naive times are wall-clock
times in ``TimeOptions.timezone``; every result is ``datetime64[ns, UTC]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SAMPLE_SIZE = 10_000  # non-blank values, spread over the column, that decide its kind
_ISO = r"^\d{4}-\d{2}-\d{2}(?:[T ]|$)"
_OFFSET = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"  # a time with Z or +hh:mm
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_DATE = (  # DD/MM/YYYY or MM/DD/YYYY with "/", "." or "-", then an optional time HH:MM[:SS[.f]] [AM|PM]
    r"^(?P<first>\d{1,2})(?P<sep>[/.-])(?P<second>\d{1,2})[/.-](?P<year>\d{4})"
    r"(?:(?:\s+|T)(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<sec>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"\s*(?P<half>[AaPp]\.?[Mm]\.?)?)?$"
)
_YEAR_FIRST = r"^\d{4}[/.]\d{1,2}[/.]\d{1,2}(?:[T ]|$)"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAME = r"(?i)^(?:\d{1,2}[-\s]+)?(?:" + "|".join(_MONTHS) + r")[a-z]*\.?[-\s]"
_KINDS = {  # ties go to the first
    "ISO 8601": _ISO,
    "dates": _DATE,
    "year-first dates": _YEAR_FIRST,
    "month names": _MONTH_NAME,
    "numbers": _NUMBER,
}
_ZONE_SUFFIX = r"\s*(?:UTC|GMT)$"  # "2025-12-31 10:00:00 UTC", "Dec 31, 2025 2:56 PM GMT": UTC times
# reading, plausible range [low, high) in units, nanoseconds per unit, rounding in ns, day 0 in days since
# 1970-01-01, wall-clock (local) time?  Excel's 1900 system counts days from 1899-12-30.
_NUMBER_READINGS = (
    ("epoch seconds", 1e8, 1e10, 10**9, 10**3, 0, False),  # 1973-03-03 .. 2286 (NaT after 2262-04-10)
    ("epoch milliseconds", 1e11, 1e13, 10**6, 10**3, 0, False),  # the same years
    ("Excel serial days", 20_000, 80_000, 86_400 * 10**9, 10**6, -25_569, True),  # 1954-10-03 .. 2119-01-10
)
_NS_LOW, _NS_HIGH = pd.Timestamp("1677-09-22", tz="UTC"), pd.Timestamp("2262-04-10", tz="UTC")
_NS_DAYS = 106_750  # |days since 1970| that datetime64[ns] holds with a day to spare
_NAT = np.iinfo(np.int64).min


@dataclass(frozen=True)
class TimeOptions:
    """How to read the time columns of a load (``--date-format``, ``--dayfirst/--no-dayfirst``, ``--timezone``)."""

    date_format: str | None = None  # strftime format for every text time column (e.g. "%d/%m/%Y %H:%M")
    dayfirst: bool | None = None  # force day-first / month-first for slash, dot and dash dates; None: per column
    timezone: str = "UTC"  # IANA zone of naive local times (values with an offset keep their offset)


@dataclass(frozen=True)
class ParsedTimes:
    """A parsed column: ``values`` is datetime64[ns, UTC] on the input's index, NaT where blank or unreadable."""

    values: pd.Series
    reading: str  # how the column was read, for the report: "ISO 8601", "day-first dates (DD/MM/YYYY)", ...


class AmbiguousDates(ValueError):
    """The dates of a column read both day-first and month-first and nothing says which is meant."""

    def __init__(self, file: str, column: str, why: str, separator: str) -> None:
        self.file = file
        self.column = column
        super().__init__(
            f"{file}, column '{column}': {why}, so day and month cannot be told apart; choose with --dayfirst"
            f" / --no-dayfirst, or give the format, e.g. --date-format '%d{separator}%m{separator}%Y'"
        )


def parse_times(raw: pd.Series, *, file: str, column: str, options: TimeOptions = TimeOptions()) -> ParsedTimes:
    """Read one timestamp column to UTC instants, one reading for the whole column.

    Args:
        raw: text (NaN for blanks), datetime64 (naive: local times in ``options.timezone``) or numbers:
            epoch seconds or milliseconds (UTC) or Excel serial days (local), whichever range holds most values.
        file, column: where the column comes from, for error messages.
        options: a format for text columns (overrides detection), the day-first choice, the zone of naive times.

    Returns:
        The instants as datetime64[ns, UTC] on ``raw.index`` and a description of the reading. Naive times in
        a DST gap move forward by the gap; naive times in a DST overlap (they happen twice) are NaT.

    Raises:
        AmbiguousDates: every date of the column reads both day-first and month-first (or as many fit only
            one as only the other) and neither ``options.dayfirst`` nor ``options.date_format`` decides.
        ValueError: ``options.timezone`` is not an IANA zone name, or ``options.date_format`` is not a format.
    """
    zone = _zone(options.timezone)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return ParsedTimes(_utc_ns(raw.dt.tz_convert("UTC")), "already datetime")
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        values, note = _localize(raw, zone)
        return ParsedTimes(values, "already datetime" + note)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return _read_numbers(raw.to_numpy(dtype="float64", na_value=np.nan), raw, zone)
    text = raw.astype("str")
    if options.date_format is not None:
        return _read_format(text, options.date_format, zone)
    arrow = pc.utf8_trim_whitespace(pa.array(text))
    if pc.any(pc.match_substring_regex(arrow, _ZONE_SUFFIX)).as_py():  # "... 14:56 UTC": the times are UTC
        arrow = pc.replace_substring_regex(arrow, _ZONE_SUFFIX, "")
        text = pd.Series(arrow.to_numpy(zero_copy_only=False), index=raw.index, dtype="str")
        zone = ZoneInfo("UTC")
    nonblank = _numpy(pc.greater(pc.utf8_length(arrow), 0), False)
    kind = _detect(arrow, nonblank)
    if kind == "ISO 8601":
        return _read_iso(text, arrow, zone)
    if kind == "dates":
        return _read_dates(arrow, nonblank, raw, file, column, options.dayfirst, zone)
    if kind == "year-first dates":  # always year, month, day: as DD/MM/YYYY
        day_first = pc.replace_substring_regex(arrow, r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})", r"\3/\2/\1")
        read = _read_dates(day_first, nonblank, raw, file, column, True, zone)
        return ParsedTimes(read.values, read.reading.replace("day-first dates (DD/MM/YYYY)", "year-first dates"))
    if kind == "month names":
        read = _read_dates(_month_names_as_numbers(arrow), nonblank, raw, file, column, True, zone)
        return ParsedTimes(read.values, read.reading.replace("day-first dates (DD/MM/YYYY)", "dates with month names"))
    if kind == "numbers":
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        return _read_numbers(numbers, raw, zone)
    reading = "no recognised timestamp format (give one with --date-format)" if nonblank.any() else "empty"
    return ParsedTimes(_naive(np.full(len(raw), _NAT), raw).dt.tz_localize("UTC"), reading)


def _month_names_as_numbers(arrow: pa.Array) -> pa.Array:
    """``Dec 31, 2025 2:56 PM``, ``December 31 2025``, ``31-Dec-2025``, ``31 Dec 2025 14:56`` -> ``31/12/2025 ...``
    (a month name leaves no doubt about the order)."""
    marked = arrow
    for number, name in enumerate(_MONTHS, start=1):
        marked = pc.replace_substring_regex(marked, rf"(?i)\b{name}[a-z]*\.?", f"M{number}M")
    month_first = pc.replace_substring_regex(marked, r"^M(\d{1,2})M\s+(\d{1,2}),?\s+(\d{4})", r"\2/\1/\3")
    return pc.replace_substring_regex(month_first, r"^(\d{1,2})[-\s]+M(\d{1,2})M[-\s,]+(\d{4})", r"\1/\2/\3")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        message = f"--timezone {name!r} is not an IANA time zone name (such as 'Europe/Berlin' or 'UTC')"
        raise ValueError(message) from error


def _numpy(values: pa.Array | pa.ChunkedArray, fill: object) -> np.ndarray:
    return np.asarray(pc.fill_null(values, fill))


def _naive(ns: np.ndarray, like: pd.Series) -> pd.Series:
    return pd.Series(ns.view("datetime64[ns]"), index=like.index, name=like.name)


def _utc_ns(values: pd.Series) -> pd.Series:
    """UTC times in any unit -> datetime64[ns, UTC]; times that unit cannot hold become NaT."""
    return values.where((values >= _NS_LOW) & (values <= _NS_HIGH)).dt.as_unit("ns")


def _localize(naive: pd.Series, zone: ZoneInfo) -> tuple[pd.Series, str]:
    """Wall-clock times in ``zone`` -> UTC; a DST gap shifts forward, a DST overlap is NaT (the hour is unknown)."""
    if zone.key == "UTC":
        return _utc_ns(naive.dt.tz_localize("UTC")), ""
    local = naive.dt.tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward")
    overlap = int((local.isna() & naive.notna()).sum())
    note = f", naive times in {zone.key}" + (f" ({overlap} in a DST overlap left NaT)" if overlap else "")
    return _utc_ns(local.dt.tz_convert("UTC")), note


def _detect(arrow: pa.Array, nonblank: np.ndarray) -> str | None:
    """The kind most values of a sample spread over the column match (None: no values, "": none matched)."""
    positions = np.flatnonzero(nonblank)
    if not len(positions):
        return None
    sample = arrow.take(positions[np.linspace(0, len(positions) - 1, min(len(positions), SAMPLE_SIZE)).astype(int)])
    counts = {kind: int(_numpy(pc.match_substring_regex(sample, rule), False).sum()) for kind, rule in _KINDS.items()}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ""


def _read_iso(text: pd.Series, arrow: pa.Array, zone: ZoneInfo) -> ParsedTimes:
    if zone.key == "UTC":  # one call: naive values are UTC anyway
        return ParsedTimes(_utc_ns(pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")), "ISO 8601")
    aware = pd.Series(_numpy(pc.match_substring_regex(arrow, _OFFSET), False), index=text.index)
    with_offset = _utc_ns(pd.to_datetime(text.where(aware), utc=True, format="ISO8601", errors="coerce"))
    local, note = _localize(pd.to_datetime(text.where(~aware), format="ISO8601", errors="coerce"), zone)
    return ParsedTimes(with_offset.where(aware, local), "ISO 8601" + note)


def _read_format(text: pd.Series, date_format: str, zone: ZoneInfo) -> ParsedTimes:
    if "%" not in date_format:
        raise ValueError(f"--date-format {date_format!r} has no strftime directive (e.g. '%d/%m/%Y %H:%M')")
    with_offset = "%z" in date_format
    try:
        parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=with_offset)
    except ValueError as error:
        raise ValueError(f"--date-format {date_format!r} is not a usable strftime format: {error}") from error
    if with_offset:
        return ParsedTimes(_utc_ns(parsed), f"format {date_format}")
    values, note = _localize(parsed, zone)
    return ParsedTimes(values, f"format {date_format}{note}")


def _read_numbers(numbers: np.ndarray, like: pd.Series, zone: ZoneInfo) -> ParsedTimes:
    """Epoch seconds, epoch milliseconds or Excel serial days: the reading whose range holds most values."""
    with np.errstate(invalid="ignore"):
        fits = [(low <= numbers) & (numbers < high) for _, low, high, *_ in _NUMBER_READINGS]
    best = int(np.argmax([f.sum() for f in fits]))
    if not fits[best].any():
        values = _naive(np.full(len(like), _NAT), like).dt.tz_localize("UTC")
        return ParsedTimes(values, "numbers outside every range (epoch seconds, epoch milliseconds, Excel serial days)")
    reading, _, _, unit_ns, step_ns, day_zero, wall_clock = _NUMBER_READINGS[best]
    ok = fits[best]
    x = np.where(ok, numbers, 0.0) + day_zero * (86_400 * 10**9 // unit_ns)
    ok &= np.abs(x * unit_ns) < 9.2e18  # datetime64[ns] ends in 2262
    whole = np.floor(np.where(ok, x, 0.0))
    fraction = np.round((np.where(ok, x, 0.0) - whole) * (unit_ns // step_ns)).astype(np.int64) * step_ns
    naive = _naive(np.where(ok, whole.astype(np.int64) * unit_ns + fraction, _NAT), like)
    if wall_clock:
        values, note = _localize(naive, zone)
        return ParsedTimes(values, reading + note)
    return ParsedTimes(naive.dt.tz_localize("UTC"), reading)


def _read_dates(
    arrow: pa.Array,
    nonblank: np.ndarray,
    like: pd.Series,
    file: str,
    column: str,
    dayfirst: bool | None,
    zone: ZoneInfo,
) -> ParsedTimes:
    """DD/MM/YYYY or MM/DD/YYYY (any of / . -), optional HH:MM[:SS[.f]] and AM/PM, one order for all values."""
    parts = pc.extract_regex(arrow, _DATE)
    matched = _numpy(pc.is_valid(parts), False)

    def number(name: str) -> np.ndarray:
        field = pc.struct_field(parts, name)
        digits = pc.utf8_rpad(field, 9, "0") if name == "fraction" else pc.utf8_lpad(field, 1, "0")
        return _numpy(pc.cast(digits, pa.int64()), 0)

    first, second, year = number("first"), number("second"), number("year")
    separator = pc.struct_field(parts, "sep")[int(np.argmax(matched))].as_py() or "/"
    if dayfirst is None:
        only_day = int((matched & (first > 12) & (second <= 12)).sum())
        only_month = int((matched & (second > 12) & (first <= 12)).sum())
        if only_day == only_month and (only_day or (matched & (first != second)).any()):
            why = f"{only_day} dates fit only day-first and as many only month-first" if only_day else ""
            raise AmbiguousDates(file, column, why or "every date reads both ways", separator)
        dayfirst = only_day >= only_month
    day, month = (first, second) if dayfirst else (second, first)
    hour, minute, sec = number("hour"), number("minute"), number("sec")
    half = pc.struct_field(parts, "half")
    twelve_hour = _numpy(pc.not_equal(half, ""), False)
    afternoon = _numpy(pc.starts_with(pc.utf8_upper(half), "P"), False)
    hour_ok = np.where(twelve_hour, (hour >= 1) & (hour <= 12), hour <= 23)
    hour = np.where(twelve_hour, hour % 12 + 12 * afternoon, hour)
    valid = matched & (month >= 1) & (month <= 12) & (day >= 1) & hour_ok & (minute <= 59) & (sec <= 59)
    month_start = ((year - 1970) * 12 + np.clip(month, 1, 12) - 1).astype("datetime64[M]")
    month_days = ((month_start + 1).astype("datetime64[D]") - month_start.astype("datetime64[D]")).astype(np.int64)
    days = month_start.astype("datetime64[D]").astype(np.int64) + day - 1
    valid &= (day <= month_days) & (np.abs(days) <= _NS_DAYS)
    seconds = np.where(valid, days * 86_400 + hour * 3_600 + minute * 60 + sec, 0)
    naive = _naive(np.where(valid, seconds * 10**9 + number("fraction"), _NAT), like)
    values, note = _localize(naive, zone)
    order = f"DD{separator}MM{separator}YYYY" if dayfirst else f"MM{separator}DD{separator}YYYY"
    unfit = int((nonblank & ~valid).sum())
    reading = f"{'day' if dayfirst else 'month'}-first dates ({order})" + note
    if unfit:
        reading += f"; {unfit} value{' does' if unfit == 1 else 's do'} not fit it"
    return ParsedTimes(values, reading)
