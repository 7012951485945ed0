"""Timestamp columns: every export format of the same instants reads to the same UTC times, one reading per column."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.timestamps import AmbiguousDates, ParsedTimes, TimeOptions, parse_times

# 2025-12-31 14:56 UTC and 2025-02-01 09:05 UTC, worked out by hand: 2025-01-01 is epoch second 1735689600,
# plus 364 days + 14:56 = 1767192960, plus 31 days + 09:05 = 1738400700. Excel day 0 is 1899-12-30, so
# 2024-12-31 is day 45657, 2025-12-31 day 46022, 2025-02-01 day 45689; 14:56 is 896/1440 of a day.
A = pd.Timestamp("2025-12-31 14:56", tz="UTC")
B = pd.Timestamp("2025-02-01 09:05", tz="UTC")
NAT = pd.NaT


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def read(*values: object, **options: object) -> ParsedTimes:
    raw = pd.Series(values, dtype=object)
    return parse_times(raw, file="leads.csv", column="created_at", options=TimeOptions(**options))  # type: ignore[arg-type]


def times(*values: object, **options: object) -> list[pd.Timestamp]:
    return read(*values, **options).values.tolist()


@pytest.mark.parametrize(
    ("values", "expected", "reading"),
    [
        (("2025-12-31T14:56:00Z", "2025-02-01T09:05:00Z"), [A, B], "ISO 8601"),
        (("2025-12-31T15:56:00+01:00", "2025-02-01 04:05-05:00"), [A, B], "ISO 8601"),
        (("2025-12-31 14:56:00.250", "2025-02-01T09:05"), [A + pd.Timedelta("250ms"), B], "ISO 8601"),
        (("2025-12-31", "2025-02-01"), [A.floor("D"), B.floor("D")], "ISO 8601"),
        (("31/12/2025 14:56", "01/02/2025 09:05"), [A, B], "day-first dates (DD/MM/YYYY)"),
        (("12/31/2025 2:56 pm", "2/1/2025 9:05:00 AM"), [A, B], "month-first dates (MM/DD/YYYY)"),
        (("31.12.2025", "01.02.2025"), [A.floor("D"), B.floor("D")], "day-first dates (DD.MM.YYYY)"),
        (("1767192960", "1738400700.25"), [A, B + pd.Timedelta("250ms")], "epoch seconds"),
        (("1767192960000", "1738400700001"), [A, B + pd.Timedelta("1ms")], "epoch milliseconds"),
        (("46022.6222222222", "45689.378472222"), [A, B], "Excel serial days"),
    ],
)
def test_every_format_of_the_same_instants_reads_to_the_same_utc_times(
    values: tuple[str, ...], expected: list[pd.Timestamp], reading: str
) -> None:
    parsed = read(np.nan, *values)
    assert parsed.values.dtype == "datetime64[ns, UTC]"
    assert parsed.values.tolist() == [NAT, *expected]
    assert parsed.reading == reading


def test_excel_serial_45657_is_the_last_day_of_2024() -> None:
    assert times("45657", "45658.5") == [utc("2024-12-31"), utc("2025-01-01 12:00")]


def test_twelve_am_is_midnight_and_twelve_pm_is_noon_and_a_24_hour_time_with_pm_is_unreadable() -> None:
    day = utc("2025-12-31")
    got = times("12/31/2025 12:00 AM", "12/31/2025 12:30 PM", "12/31/2025 13:00 PM", "12/31/2025 0:10 AM")
    assert got == [day, day + pd.Timedelta("12h30min"), NAT, NAT]


def test_a_column_of_only_ambiguous_dates_names_file_column_and_the_way_to_choose() -> None:
    with pytest.raises(AmbiguousDates) as caught:
        read("01/02/2025", "03/04/2025 10:00", np.nan)
    message = str(caught.value)
    assert (caught.value.file, caught.value.column) == ("leads.csv", "created_at")
    assert "leads.csv" in message and "created_at" in message
    assert "--dayfirst" in message and "--no-dayfirst" in message and "--date-format '%d/%m/%Y'" in message


@pytest.mark.parametrize(("dayfirst", "expected"), [(True, "2025-02-01"), (False, "2025-01-02")])
def test_the_dayfirst_option_decides_an_ambiguous_column(dayfirst: bool, expected: str) -> None:
    parsed = read("01/02/2025", dayfirst=dayfirst)
    assert parsed.values.tolist() == [utc(expected)]
    assert parsed.reading.startswith("day-first" if dayfirst else "month-first")


def test_the_dayfirst_option_leaves_dates_that_do_not_fit_it_unread() -> None:
    assert times("31/12/2025", "12/31/2025", dayfirst=False) == [NAT, A.floor("D")]


def test_dates_whose_day_equals_their_month_read_the_same_either_way_and_do_not_raise() -> None:
    assert times("05/05/2025", "11.11.2025") == [utc("2025-05-05"), utc("2025-11-11")]


def test_a_mixed_column_is_read_the_way_most_dates_fit_and_the_others_are_not_read_another_way() -> None:
    parsed = read("31/12/2025", "13/01/2025", "01/02/2025", "12/31/2025", "31/02/2025", "2025-12-31")
    assert parsed.values.tolist() == [A.floor("D"), utc("2025-01-13"), utc("2025-02-01"), NAT, NAT, NAT]
    assert parsed.reading == "day-first dates (DD/MM/YYYY); 3 values do not fit it"


def test_as_many_day_first_only_as_month_first_only_dates_raise() -> None:
    with pytest.raises(AmbiguousDates, match="1 dates fit only day-first"):
        read("31/12/2025", "12/31/2025", "01/02/2025")


def test_values_of_another_kind_in_an_iso_column_are_unparseable_not_guessed() -> None:
    assert times("2025-12-31T14:56:00Z", "2025-02-01 09:05", "31/12/2025 14:56", "1767192960", "Dec 31, 2025") == [
        A,
        B,
        NAT,
        NAT,
        NAT,
    ]


def test_a_date_format_overrides_detection_and_values_not_matching_it_are_unparseable() -> None:
    parsed = read("01.02.2025 09:05", "2025-02-01T09:05:00Z", np.nan, date_format="%d.%m.%Y %H:%M")
    assert parsed.values.tolist() == [B, NAT, NAT]
    assert parsed.reading == "format %d.%m.%Y %H:%M"
    assert times("01/02/2025 10:05 +0100", date_format="%d/%m/%Y %H:%M %z") == [B]


def test_an_unusable_date_format_is_a_value_error_naming_the_option() -> None:
    with pytest.raises(ValueError, match="--date-format '%d/%q/%Y'"):
        read("01/02/2025", date_format="%d/%q/%Y")


def test_naive_times_are_berlin_wall_clock_times_a_gap_moves_forward_an_overlap_is_unparseable() -> None:
    parsed = read(
        "2025-01-15 12:00",  # CET, UTC+1
        "2025-07-15 12:00",  # CEST, UTC+2
        "2025-03-30 02:30",  # in the spring gap (02:00 -> 03:00): 03:00 CEST
        "2025-10-26 02:30",  # in the autumn overlap: happened twice
        "2025-07-15T12:00:00Z",  # has an offset: keeps it
        timezone="Europe/Berlin",
    )
    expected = [utc("2025-01-15 11:00"), utc("2025-07-15 10:00"), utc("2025-03-30 01:00")]
    assert parsed.values.tolist() == [*expected, NAT, utc("2025-07-15 12:00")]
    assert parsed.reading == "ISO 8601, naive times in Europe/Berlin (1 in a DST overlap left NaT)"


def test_dates_and_excel_serials_are_wall_clock_times_but_epoch_numbers_are_utc() -> None:
    berlin = {"timezone": "Europe/Berlin"}
    assert times("31/12/2025 15:56", **berlin) == [A]
    assert times("46022.6638888889", **berlin) == [A]  # 15:56 = 956/1440 of a day
    assert times("1767192960", **berlin) == [A]


def test_an_unknown_timezone_is_a_value_error_naming_the_option() -> None:
    with pytest.raises(ValueError, match="--timezone 'Europe/Nowhere'"):
        read("2025-12-31", timezone="Europe/Nowhere")


def test_parquet_numbers_are_read_by_their_range_and_numbers_out_of_it_are_unparseable() -> None:
    milliseconds = pd.Series([1767192960000, 1738400700000, 99], dtype="int64")
    parsed = parse_times(milliseconds, file="leads.parquet", column="created_at")
    assert (parsed.values.tolist(), parsed.reading) == ([A, B, NAT], "epoch milliseconds")
    nullable = pd.Series([1767192960, None, 1767192960000], dtype="Int64")
    assert parse_times(nullable, file="f", column="c").values.tolist() == [A, NAT, NAT]  # seconds: most values
    nobody = parse_times(pd.Series([5.0, 3e10]), file="f", column="c")
    assert nobody.values.isna().all() and nobody.reading.startswith("numbers outside every range")


def test_datetime_columns_keep_their_zone_or_are_wall_clock_times() -> None:
    aware = pd.Series(pd.to_datetime(["2025-12-31T16:56:00+02:00"]))
    assert parse_times(aware, file="f", column="c").values.tolist() == [A]
    naive = pd.Series(pd.to_datetime(["2025-12-31 15:56:00"]), index=[7])
    parsed = parse_times(naive, file="f", column="c", options=TimeOptions(timezone="Europe/Berlin"))
    assert parsed.values.dtype == "datetime64[ns, UTC]"
    assert parsed.values.to_dict() == {7: A}


@pytest.mark.parametrize("dtype", [object, "str"])  # "str": what read_csv(dtype=str) gives in pandas 3
def test_the_result_keeps_the_input_index_and_blank_columns_are_all_missing(dtype: object) -> None:
    raw = pd.Series(["31/12/2025 14:56", np.nan, "  "], index=[10, 20, 30], dtype=dtype)  # type: ignore[call-overload]
    assert parse_times(raw, file="f", column="c").values.to_dict() == {10: A, 20: NAT, 30: NAT}
    empty = parse_times(pd.Series([np.nan, ""], dtype=object), file="f", column="c")
    assert empty.values.isna().all() and empty.reading == "empty"


def test_text_in_no_known_format_is_unparseable_and_points_to_the_date_format_option() -> None:
    parsed = read("the 31st of December", "Q1 2025")
    assert parsed.values.isna().all() and "--date-format" in parsed.reading


def test_times_beyond_what_nanoseconds_hold_are_unparseable_not_an_error() -> None:
    assert times("9999-12-31", "2025-12-31") == [NAT, A.floor("D")]
    assert times("31/12/9999", "31/12/2025") == [NAT, A.floor("D")]
    assert times("31/12/9999", "31/12/2025", date_format="%d/%m/%Y", timezone="UTC") == [NAT, A.floor("D")]


# ---- property: any instant written in any supported format reads back, at that format's precision ----

EXCEL_DAY_ZERO = datetime(1899, 12, 30)
WRITERS = {  # name: (write a naive UTC datetime, precision, a value that decides day-first/month-first)
    "iso_z": (lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "us", None),
    "iso_offset": (lambda t: (t + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%d %H:%M:%S+05:30"), "s", None),
    "date_only": (lambda t: t.strftime("%Y-%m-%d"), "D", None),
    "day_first": (lambda t: f"{t.day}/{t.month}/{t.year} {t.hour}:{t:%M}", "min", "31/12/2025 00:00"),
    "month_first": (lambda t: f"{t.month}/{t.day}/{t.year} {(t.hour - 1) % 12 + 1}:{t:%M:%S %p}", "s", "12/31/2025"),
    "dots": (lambda t: t.strftime("%d.%m.%Y"), "D", "31.12.2025"),
    "epoch_s": (lambda t: str(int((t - datetime(1970, 1, 1)).total_seconds())), "s", None),
    "epoch_ms": (lambda t: str((t - datetime(1970, 1, 1)) // timedelta(milliseconds=1)), "ms", None),
    "excel": (lambda t: repr((t - EXCEL_DAY_ZERO) / timedelta(days=1)), "s", None),
}


@pytest.mark.parametrize("name", WRITERS)
@settings(max_examples=60, deadline=None)
@given(instant=st.datetimes(min_value=datetime(1974, 1, 1), max_value=datetime(2100, 12, 31)))
def test_any_instant_in_any_format_reads_back_at_its_precision(name: str, instant: datetime) -> None:
    write, precision, anchor = WRITERS[name]
    truth = pd.Timestamp(instant).floor(precision)
    values = [write(truth.to_pydatetime())] + ([anchor] if anchor else [])
    assert times(*values)[0] == truth.tz_localize("UTC")


@pytest.mark.parametrize(
    ("values", "reading"),
    [
        (["2025/12/31 14:56", "2026/1/5"], "year-first dates"),
        (["2025.12.31 14:56", "2026.01.05"], "year-first dates"),
        (["Dec 31, 2025 2:56 PM", "January 5, 2026"], "dates with month names"),
        (["31-Dec-2025 14:56", "05 Jan 2026"], "dates with month names"),
        (["2025-12-31 14:56:00 UTC", "2026-01-05 00:00 GMT"], "ISO 8601"),
    ],
)
def test_unambiguous_formats_the_old_loader_read_are_still_read(values: list[str], reading: str) -> None:
    """Year-first dates are always year, month, day; a month name leaves no doubt; a 'UTC' suffix is Z."""
    parsed = parse_times(pd.Series(values), file="f.csv", column="c", options=TimeOptions(timezone="Europe/Berlin"))
    assert parsed.reading.startswith(reading)
    expected = [pd.Timestamp("2025-12-31 14:56"), pd.Timestamp("2026-01-05")]
    if reading != "ISO 8601":  # naive: wall-clock times in Berlin (UTC+1 in winter)
        expected = [t - pd.Timedelta(hours=1) for t in expected]
    assert list(parsed.values) == [t.tz_localize("UTC") for t in expected]
