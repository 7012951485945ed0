"""The data contract: each bad-input kind is named (file, line, column), dropped and counted, or fails if strict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import build_features, infer_spec
from tests.factories import T0, days, make_lead, make_outcome, make_touch
from training.data import DataValidationError, FlatExportOptions, load_crm_data


def write_dir(tmp_path: Path, leads, touches, outcomes, fmt: str = "csv") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, rows in (("leads", leads), ("touchpoints", touches), ("outcomes", outcomes)):
        if rows is None:
            continue
        df = pd.DataFrame(rows)
        path = tmp_path / f"{name}.{fmt}"
        df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path, index=False)
    return tmp_path


def good_rows():
    leads = [make_lead(lead_id="L1"), make_lead(lead_id="L2")]
    touches = [make_touch(lead_id="L1"), make_touch(lead_id="L2", touch_type="call")]
    outcomes = [make_outcome(lead_id="L1")]
    return leads, touches, outcomes


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_clean_data_loads_in_both_formats(tmp_path: Path, fmt: str) -> None:
    data = load_crm_data(write_dir(tmp_path, *good_rows(), fmt=fmt))
    assert len(data.leads) == 2 and len(data.touchpoints) == 2 and len(data.outcomes) == 1
    assert data.report.dropped == 0
    assert str(data.leads["created_at"].dt.tz) == "UTC"
    assert data.leads["annual_revenue_musd"].dtype == float  # numeric text became a number


def test_missing_touchpoints_file_is_allowed_and_said(tmp_path: Path) -> None:
    leads, _, outcomes = good_rows()
    data = load_crm_data(write_dir(tmp_path, leads, None, outcomes))
    assert data.touchpoints is None
    assert any("no touchpoints" in n for n in data.report.notes)


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    leads, touches, outcomes = good_rows()
    for t in touches:
        del t["touch_type"]
    with pytest.raises(DataValidationError) as err:
        load_crm_data(write_dir(tmp_path, leads, touches, outcomes))
    assert "touchpoints.csv" in str(err.value) and "'touch_type'" in str(err.value)


def test_missing_leads_file_is_an_error(tmp_path: Path) -> None:
    _, touches, outcomes = good_rows()
    with pytest.raises(DataValidationError, match=r"no leads\.parquet or leads\.csv"):
        load_crm_data(write_dir(tmp_path, None, touches, outcomes))


BAD_CASES = {
    "unparseable lead timestamp": (
        "leads",
        {"lead_id": "L3", "created_at": "not a date"},
        "unparseable timestamp",
        "created_at",
    ),
    "duplicate lead id": ("leads", {"lead_id": "L1"}, "duplicate lead_id", "lead_id"),
    "touch for unknown lead": ("touchpoints", {"lead_id": "GHOST"}, "touch point for an unknown lead", "lead_id"),
    "unparseable touch time": ("touchpoints", {"occurred_at": "yesterday-ish"}, "unparseable timestamp", "occurred_at"),
    "outcome for unknown lead": ("outcomes", {"lead_id": "GHOST"}, "outcome for an unknown lead", "lead_id"),
    "outcome before lead": (
        "outcomes",
        {"lead_id": "L2", "closed_at": T0 - days(3)},
        "dated before the lead",
        "closed_at",
    ),
    "unknown outcome value": ("outcomes", {"lead_id": "L2", "outcome": "maybe"}, "unknown outcome value", "outcome"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_each_bad_row_kind_is_dropped_counted_and_named(tmp_path: Path, case: str) -> None:
    table, override, reason, column = BAD_CASES[case]
    leads, touches, outcomes = good_rows()
    factory = {"leads": make_lead, "touchpoints": make_touch, "outcomes": make_outcome}[table]
    rows = {"leads": leads, "touchpoints": touches, "outcomes": outcomes}[table]
    rows.append(factory(**override))
    bad_line = len(rows) + 1  # header is line 1
    data = load_crm_data(write_dir(tmp_path, leads, touches, outcomes))
    kept = {"leads": data.leads, "touchpoints": data.touchpoints, "outcomes": data.outcomes}[table]
    assert len(kept) == len(rows) - 1
    assert data.report.dropped == 1
    (line,) = data.report.lines()
    assert f"{table}.csv" in line and reason in line and f"line {bad_line}" in line and f"'{column}'" in line

    with pytest.raises(DataValidationError) as err:
        load_crm_data(tmp_path, strict=True)
    assert reason in str(err.value) and f"line {bad_line}" in str(err.value)


FLAT = "id,when,src,score_by_sales,converted\nA,2025-01-01,web,9,1\nB,2025-01-02,Select,1,0\nC,2025-01-03,ads,5,yes\n"


def test_flat_export_with_exclusions_and_time(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(FLAT)
    options = FlatExportOptions(
        id_column="id",
        time_column="when",
        label_column="converted",
        positive_label="1",
        exclude_columns=("score_by_sales",),
    )
    data = load_crm_data(path, flat=options)
    assert list(data.leads.columns) == ["lead_id", "created_at", "src"]
    assert data.leads["src"].isna().tolist() == [False, True, False]  # "Select" is a placeholder, not a value
    # "yes" is a won value of the common vocabulary, as "1" is; the counts by value are noted
    assert data.outcomes["outcome"].tolist() == ["won", "lost", "won"]
    assert "export.csv, column 'converted': 2 converted ('1' 1, 'yes' 1); 1 not converted ('0' 1)" in data.report.notes
    assert data.has_time


def test_flat_export_without_time_says_so(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(FLAT)
    data = load_crm_data(path, flat=FlatExportOptions(id_column="id", label_column="converted"))
    assert not data.has_time
    assert any("no time split" in n for n in data.report.notes)


def test_flat_export_unknown_excluded_column_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(FLAT)
    with pytest.raises(DataValidationError, match="excluded column does not exist"):
        load_crm_data(path, flat=FlatExportOptions(id_column="id", label_column="converted", exclude_columns=("nope",)))


def test_real_export_loads_through_the_flat_path() -> None:
    real = Path(__file__).resolve().parents[3] / "shared" / "data" / "xeducation" / "Leads.csv"
    assert real.exists(), f"the real CRM export belongs beside the checkout (../shared): {real}"
    data = load_crm_data(
        real,
        flat=FlatExportOptions(
            id_column="Prospect ID", label_column="Converted", exclude_columns=("Tags", "Lead Quality")
        ),
    )
    assert len(data.leads) == 9240 and int((data.outcomes.outcome == "won").sum()) == 3561
    assert "Tags" not in data.leads.columns


# ---- touches: re-sent rows are dropped by touch_id, distinct touches all count ------------------------
def test_rows_repeating_a_touch_id_are_dropped_and_counted(tmp_path: Path) -> None:
    leads, _, outcomes = good_rows()
    touches = [
        make_touch(touch_id="t1", occurred_at="2025-03-02"),
        make_touch(touch_id="t1", occurred_at="2025-03-02"),  # line 3: t1 sent again
        make_touch(touch_id="t2", occurred_at="2025-03-02"),  # equal to t1 in every other column: a touch
        make_touch(touch_id="t3", occurred_at="not a date"),  # line 5: bad, dropped for its time
        make_touch(touch_id="t3", occurred_at="2025-03-03"),  # so this is t3's first good row: kept
        make_touch(touch_id=None, occurred_at="2025-03-04"),  # blank ids are never repeats
        make_touch(touch_id=None, occurred_at="2025-03-04"),
    ]
    data = load_crm_data(write_dir(tmp_path, leads, touches, outcomes))
    assert len(data.touchpoints) == 5  # t1, t2, t3 (the good row), two without an id
    assert data.touchpoints["touch_id"].tolist()[:3] == ["t1", "t2", "t3"]
    assert data.report.counts[("touchpoints.csv", "duplicate touch_id (first row kept)")] == 1
    assert any("line 3, column 'touch_id'" in line for line in data.report.lines())
    assert data.report.dropped == 2  # the repeat and the unparseable time

    with pytest.raises(DataValidationError, match=r"line 3, column 'touch_id': duplicate touch_id"):
        load_crm_data(tmp_path, strict=True)


def test_without_touch_id_equal_rows_all_count_and_are_noted(tmp_path: Path) -> None:
    leads, _, outcomes = good_rows()
    call = make_touch(touch_type="call", occurred_at="2025-03-02")  # a date-only export: two calls that day
    touches = [call, dict(call), dict(call), make_touch(occurred_at="2025-03-02")]
    data = load_crm_data(write_dir(tmp_path, leads, touches, outcomes))
    assert len(data.touchpoints) == 4 and data.report.dropped == 0
    # three rows equal another in every column, two of them repeat an earlier one
    assert any(
        note.startswith("touchpoints.csv: 3 row(s) equal another row in every column (2 repeat an earlier row)")
        for note in data.report.notes
    )


# ---- attributes: read once, as the features read them -----------------------------------------------
def test_attribute_columns_are_read_as_the_features_read_values(tmp_path: Path) -> None:
    leads = [
        make_lead(lead_id="L1", partner="true", opted_in="1", industry="  Software ", size="1_10", n=" 3 "),
        make_lead(lead_id="L2", partner="False", opted_in="0", industry="SOFTWARE", size="11-50", n="NaN"),
        make_lead(lead_id="L3", partner="TRUE", opted_in="true", industry="Select", size=" n/a", n="Select"),
        make_lead(lead_id="L4", partner="", opted_in="", industry="Finance", size="51-200", n="1e3"),
    ]
    data = load_crm_data(write_dir(tmp_path, leads, [make_touch()], [make_outcome()]))
    got = data.leads.set_index("lead_id")
    assert got["partner"].tolist() == ["true", "false", "true", None]  # booleans alone: a category
    assert got["opted_in"].tolist()[:3] == [1.0, 0.0, 1.0] and np.isnan(got["opted_in"]["L4"])  # 0/1: numbers
    assert got["industry"].tolist() == ["software", "software", None, "finance"]  # stripped, folded; placeholder
    assert got["size"].tolist() == ["1_10", "11-50", None, "51-200"]  # labels, not numbers
    np.testing.assert_array_equal(got["n"], [3.0, np.nan, np.nan, 1000.0])


def test_csv_and_parquet_read_the_same_attributes_alike(tmp_path: Path) -> None:
    # Parquet keeps types (bool, int); CSV is text; the features see the same values either way
    rows = [
        make_lead(lead_id=f"L{i}", partner=bool(i % 2), opted_in=i % 2, industry=[" Software", "finance"][i % 2])
        for i in range(6)
    ]
    csv = load_crm_data(write_dir(tmp_path / "csv", rows, [make_touch()], [make_outcome()], fmt="csv"))
    parquet = load_crm_data(write_dir(tmp_path / "pq", rows, [make_touch()], [make_outcome()], fmt="parquet"))
    spec = infer_spec(csv.leads, csv.touchpoints, min_category_count=1)
    assert spec == infer_spec(parquet.leads, parquet.touchpoints, min_category_count=1)
    assert spec.categorical_attributes["partner"] == ("false", "true")
    assert spec.categorical_attributes["industry"] == ("finance", "software")
    assert "opted_in" in spec.numeric_attributes
    as_of = T0 + days(5)
    pd.testing.assert_frame_equal(
        build_features(csv.leads, csv.touchpoints, as_of, spec),
        build_features(parquet.leads, parquet.touchpoints, as_of, spec),
    )


def test_outcomes_of_a_table_with_no_valid_lead_are_each_an_unknown_lead() -> None:
    """A Dask partition whose leads were all dropped still has their outcomes: each is dropped and counted as
    for an unknown lead (pandas cannot map ids through an empty time series: this used to be a TypeError)."""
    from training.data import ValidationReport, validate_outcomes

    no_leads = pd.DataFrame({"lead_id": pd.Series([], dtype=object), "created_at": pd.Series([], dtype="M8[ns, UTC]")})
    outcomes = pd.DataFrame(
        {
            "lead_id": ["a", "b"],
            "outcome": ["won", "lost"],
            "closed_at": pd.to_datetime(["2026-01-05", "2026-01-06"], utc=True),
        }
    )
    report = ValidationReport()
    kept = validate_outcomes(outcomes, "outcomes", no_leads, report, False)
    assert kept.empty and report.dropped == 2
    assert any("outcome for an unknown lead" in line and "2" in line for line in report.lines())


def test_a_part_of_a_table_names_dropped_rows_by_their_lead_not_a_line() -> None:
    """A Dask partition's rows are not any file's lines: with ``by_lead`` each example names the row's lead
    (and the note on an unread number too); the same rows read as a file are named by line."""
    from training.data import ValidationReport, validate_leads, validate_touchpoints

    leads = pd.DataFrame({"lead_id": ["L1", "L2"], "created_at": ["2026-01-01", "2026-01-02"]})
    touches = pd.DataFrame(
        {
            "lead_id": ["L2", "L1", "L9"],
            "occurred_at": ["2026-01-03", "not a date", "2026-01-03"],
            "touch_type": ["call", "call", "call"],
            "value": ["lots", "1", "2"],
        }
    )
    for by_lead, first, unknown, note in (
        (True, "lead 'L1'", "lead 'L9'", "lead 'L2'"),
        (False, "line 3", "line 4", "line 2"),
    ):
        report = ValidationReport()
        kept_leads = validate_leads(leads, "leads", report, False, by_lead=by_lead)
        kept = validate_touchpoints(touches, "touchpoints", kept_leads, report, False, by_lead=by_lead)
        assert list(kept["lead_id"]) == ["L2"] and report.dropped == 2
        lines = report.lines()
        assert any(f"(first: touchpoints, {first}, column 'occurred_at'" in line for line in lines), lines
        assert any(f"(first: touchpoints, {unknown}, column 'lead_id'" in line for line in lines), lines
        assert any(f"(first: {note}, 'lots')" in n for n in report.notes), report.notes


def test_a_folder_of_parts_names_dropped_rows_by_their_lead(tmp_path: Path) -> None:
    """The local engine reads a folder of part files as one table, whose row numbers are no file's lines."""
    leads, touches, outcomes = good_rows()
    data_dir = write_dir(tmp_path, None, touches, outcomes, fmt="parquet")
    (data_dir / "leads").mkdir()
    pd.DataFrame(leads).to_parquet(data_dir / "leads" / "part-0.parquet", index=False)
    bad = pd.DataFrame([make_lead(lead_id="L3", created_at="yesterday-ish")])
    bad.to_parquet(data_dir / "leads" / "part-1.parquet", index=False)
    data = load_crm_data(data_dir)
    assert sorted(data.leads["lead_id"]) == ["L1", "L2"] and data.report.dropped == 1
    (line,) = data.report.lines()
    assert "(first: leads, lead 'L3', column 'created_at'" in line, line


def test_notes_that_count_rows_add_up_over_the_parts_of_a_table() -> None:
    """Dask partitions each note their unread numbers and equal rows; merged, each note is said once with the
    parts' counts summed and the first part's example (it used to be one line per partition, each with its
    own partial count)."""
    from training.dask_engine import merge_reports
    from training.data import ValidationReport, validate_leads, validate_touchpoints

    def part(lead: str, values: list[str]) -> ValidationReport:
        report = ValidationReport()
        leads = validate_leads(
            pd.DataFrame({"lead_id": [lead], "created_at": ["2026-01-01"]}), "leads", report, False, by_lead=True
        )
        touches = pd.DataFrame(
            {
                "lead_id": [lead] * len(values),
                "occurred_at": ["2026-01-02"] * len(values),
                "touch_type": ["call"] * len(values),
                "value": values,
            }
        )
        validate_touchpoints(touches, "touchpoints", leads, report, False, by_lead=True)
        return report

    first = part("A", ["lots", "lots", "1"])  # 1 unread number... twice, and 2 equal rows (1 repeat)
    second = part("B", ["many", "2", "3"])  # 1 unread number, no equal rows
    merged = merge_reports([first, second])
    unread = [n for n in merged.notes if "are not numbers" in n]
    assert unread == [
        "touchpoints, column 'value': 3 value(s) are not numbers and are read as missing (first: lead 'A', "
        "'lots'); the rows are kept"
    ]
    equal = [n for n in merged.notes if "equal another row" in n]
    assert len(equal) == 1 and equal[0].startswith("touchpoints: 2 row(s) equal another row in every column (1 repeat")
