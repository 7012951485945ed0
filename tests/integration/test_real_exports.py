"""Real CRM exports: the same data written the way CRMs and spreadsheets write it gives the same validated
tables and the same features as the clean CSV; ambiguous or mangled files stop with exit 2 naming file and
column (issue 13)."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import build_features, infer_spec
from tests.conftest import leadscore_in_process
from training.data import CRMData, DataValidationError, FlatExportOptions, InputOptions, load_crm_data
from training.demo_data import generate_demo_data
from training.reading import ReadOptions
from training.timestamps import TimeOptions

TIMES = {"leads": "created_at", "touchpoints": "occurred_at", "outcomes": "closed_at"}
END = pd.Timestamp("2030-01-01", tz="UTC")


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    """300 demo leads with numeric ids that keep leading zeros and times to the minute (what every shape
    below can write exactly)."""
    demo = generate_demo_data(n_leads=300, seed=3)
    out = {}
    for name, frame in (("leads", demo.leads), ("touchpoints", demo.touchpoints), ("outcomes", demo.outcomes)):
        frame = frame.copy()
        frame["lead_id"] = "000" + frame["lead_id"].str[1:]  # "L0000017" -> "0000000017"
        frame[TIMES[name]] = frame[TIMES[name]].dt.floor("min")
        out[name] = frame
    return out


def write(directory: Path, tables: dict[str, pd.DataFrame], **to_csv: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = str(to_csv.pop("suffix", ".csv"))
    for name, frame in tables.items():
        frame.to_csv(directory / f"{name}{suffix}", index=False, **to_csv)  # type: ignore[call-overload]
    return directory


def with_times(tables: dict[str, pd.DataFrame], render: Callable[[pd.Series], pd.Series]) -> dict[str, pd.DataFrame]:
    return {name: frame.assign(**{TIMES[name]: render(frame[TIMES[name]])}) for name, frame in tables.items()}


def load(directory: Path, **inputs: object) -> CRMData:
    return load_crm_data(directory, data_end=END, now=END, inputs=InputOptions(**inputs))  # type: ignore[arg-type]


def epoch_ms(t: pd.Series) -> pd.Series:
    return (t - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(milliseconds=1)


def excel_serial(t: pd.Series) -> pd.Series:
    return (t.dt.tz_localize(None) - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)


SHAPES: dict[str, Callable[[Path, dict[str, pd.DataFrame]], tuple[Path, dict[str, object]]]] = {
    "semicolon, decimal comma, Windows-1252": lambda d, t: (
        write(d, t, sep=";", decimal=",", encoding="cp1252"),
        {},
    ),
    "day-first dates 31/12/2025 14:56": lambda d, t: (
        write(d, with_times(t, lambda s: s.dt.strftime("%d/%m/%Y %H:%M"))),
        {},
    ),
    "month-first dates 12/31/2025 2:56 PM (Salesforce)": lambda d, t: (
        write(d, with_times(t, lambda s: s.dt.strftime("%m/%d/%Y %I:%M %p"))),
        {},
    ),
    "epoch milliseconds (HubSpot)": lambda d, t: (write(d, with_times(t, epoch_ms)), {}),
    "Excel serial days": lambda d, t: (write(d, with_times(t, excel_serial)), {}),
    "local times with DST offsets": lambda d, t: (
        write(d, with_times(t, lambda s: s.dt.tz_convert("Europe/Berlin").dt.strftime("%Y-%m-%dT%H:%M:%S%z"))),
        {},
    ),
    "naive local times with --timezone": lambda d, t: (
        write(d, with_times(t, lambda s: s.dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d %H:%M"))),
        {"time": TimeOptions(timezone="America/New_York")},
    ),
    "UTF-8 with BOM, CRLF, every field quoted": lambda d, t: (
        write(d, t, encoding="utf-8-sig", lineterminator="\r\n", quoting=1),
        {},
    ),
    "Excel Unicode text (UTF-16, tab)": lambda d, t: (
        write(d, t, sep="\t", encoding="utf-16", suffix=".txt"),
        {},
    ),
    "pipe-delimited": lambda d, t: (write(d, t, sep="|"), {}),
    "outcomes as Salesforce stages Closed Won / Closed Lost": lambda d, t: (
        write(
            d,
            {
                **t,
                "outcomes": t["outcomes"].assign(
                    outcome=t["outcomes"]["outcome"].map({"won": "Closed Won", "lost": "Closed Lost"})
                ),
            },
        ),
        {},
    ),
    "a company's own stage names with --won-values / --lost-values": lambda d, t: (
        write(
            d,
            {
                **t,
                "outcomes": t["outcomes"].assign(
                    outcome=t["outcomes"]["outcome"].map({"won": "Signed", "lost": "Churned"})
                ),
            },
        ),
        {"won_values": ("Signed",), "lost_values": ("Churned",)},
    ),
    "upper-case touch types with trailing spaces": lambda d, t: (
        write(
            d,
            {**t, "touchpoints": t["touchpoints"].assign(touch_type=t["touchpoints"]["touch_type"].str.upper() + "  ")},
        ),
        {},
    ),
}


def excel_shape(d: Path, t: dict[str, pd.DataFrame]) -> tuple[Path, dict[str, object]]:
    """A directory of workbooks, each table on its second sheet (after a cover sheet), times as date cells."""
    d.mkdir(parents=True, exist_ok=True)
    for name, frame in t.items():
        with pd.ExcelWriter(d / f"{name}.xlsx", engine="openpyxl") as book:
            pd.DataFrame({"note": ["exported from the CRM"]}).to_excel(book, sheet_name="Cover", index=False)
            frame.assign(**{TIMES[name]: frame[TIMES[name]].dt.tz_localize(None)}).to_excel(
                book, sheet_name="Data", index=False
            )
    return d, {"read": ReadOptions(sheet="Data")}


SHAPES["Excel workbooks, --sheet"] = excel_shape


@pytest.fixture(scope="module")
def clean(tables: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> CRMData:
    return load(write(tmp_path_factory.mktemp("clean"), tables))


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reset_index(drop=True).copy()
    for col in out.columns:
        if out[col].dtype == object or isinstance(out[col].dtype, pd.StringDtype):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_export_shape_gives_the_clean_csvs_tables_and_features(
    shape: str, tables: dict[str, pd.DataFrame], clean: CRMData, tmp_path: Path
) -> None:
    directory, inputs = SHAPES[shape](tmp_path / "export", tables)
    data = load(directory, **inputs)
    assert data.report.dropped == 0, data.report.lines()
    assert data.leads["lead_id"].iloc[0].startswith("000")  # ids are text: leading zeros kept
    for name in ("leads", "outcomes"):
        pd.testing.assert_frame_equal(
            comparable(getattr(data, name)), comparable(getattr(clean, name)), check_dtype=False, obj=name
        )
    assert data.touchpoints is not None and clean.touchpoints is not None
    pd.testing.assert_series_equal(data.touchpoints["occurred_at"], clean.touchpoints["occurred_at"])
    spec = infer_spec(clean.leads, clean.touchpoints)
    as_of = pd.Timestamp("2026-03-01", tz="UTC")
    expected = build_features(clean.leads, clean.touchpoints, as_of, spec)
    got = build_features(data.leads, data.touchpoints, as_of, spec)
    pd.testing.assert_frame_equal(got, expected)
    assert set(data.report.formats) == {p.name for p in directory.iterdir()}


def test_what_was_detected_is_reported(tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    accented = {**tables, "leads": tables["leads"].assign(owner="Jürgen Müller, Café €")}
    directory, _ = SHAPES["semicolon, decimal comma, Windows-1252"](tmp_path / "eu", accented)
    data = load(directory)
    assert set(data.leads["owner"]) == {"jürgen müller, café €"}  # decoded right (then a category key)
    assert "cp1252 (detected)" in data.report.formats["leads.csv"]
    assert "';'-delimited (detected)" in data.report.formats["leads.csv"]
    assert "decimal comma" in data.report.formats["leads.csv"]
    day_first = load(SHAPES["day-first dates 31/12/2025 14:56"](tmp_path / "dmy", tables)[0])
    assert day_first.report.time_readings["leads.csv, column 'created_at'"].startswith("day-first")
    assert any("times read as day-first" in line for line in day_first.report.reading_lines())


def test_day_first_dates_are_never_read_month_first(tmp_path: Path) -> None:
    """31/12/2025 decides the column: 01/02/2026 is the 1st of February, not the 2nd of January."""
    (tmp_path / "leads.csv").write_text("lead_id,created_at\n1,31/12/2025 10:00\n2,01/02/2026 10:00\n")
    (tmp_path / "outcomes.csv").write_text("lead_id,outcome,closed_at\n1,won,15/02/2026 09:00\n")
    data = load(tmp_path)
    assert data.leads["created_at"].tolist() == [
        pd.Timestamp("2025-12-31 10:00", tz="UTC"),
        pd.Timestamp("2026-02-01 10:00", tz="UTC"),
    ]
    assert data.outcomes["closed_at"].tolist() == [pd.Timestamp("2026-02-15 09:00", tz="UTC")]


def test_a_column_readable_both_ways_is_refused_naming_file_column_and_the_choice(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text("lead_id,created_at\n1,01/02/2026\n2,03/04/2026\n")
    (tmp_path / "outcomes.csv").write_text("lead_id,outcome,closed_at\n")
    with pytest.raises(DataValidationError) as err:
        load(tmp_path)
    message = str(err.value)
    assert "leads.csv" in message and "created_at" in message and "--dayfirst" in message
    assert "--date-format" in message
    chosen = load(tmp_path, time=TimeOptions(dayfirst=True))
    assert chosen.leads["created_at"].tolist()[0] == pd.Timestamp("2026-02-01", tz="UTC")
    month_first = load(tmp_path, time=TimeOptions(date_format="%m/%d/%Y"))
    assert month_first.leads["created_at"].tolist()[0] == pd.Timestamp("2026-01-02", tz="UTC")


def test_ids_in_scientific_notation_are_refused_by_row(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text(
        "lead_id,created_at\n000123,2026-01-01\n4.687E+11,2026-01-02\n468700000001,2026-01-03\n"
    )
    (tmp_path / "outcomes.csv").write_text("lead_id,outcome,closed_at\n000123,won,2026-01-05\n")
    data = load(tmp_path)
    assert data.leads["lead_id"].tolist() == ["000123", "468700000001"]
    (line,) = [x for x in data.report.lines() if "scientific notation" in x]
    assert "leads.csv: dropped 1 row(s)" in line and "line 3" in line and "'lead_id'" in line
    assert data.outcomes["lead_id"].tolist() == ["000123"]


def test_unknown_outcome_values_are_counted_by_value(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text("lead_id,created_at\n" + "".join(f"{i},2026-01-01\n" for i in range(6)))
    (tmp_path / "outcomes.csv").write_text(
        "lead_id,outcome,closed_at\n0,Closed Won,2026-02-01\n1,CLOSED_LOST,2026-02-01\n2,Pending,2026-02-01\n"
        "3,Pending,2026-02-01\n4,On hold,2026-02-01\n5,converted,2026-02-01\n"
    )
    data = load(tmp_path)
    assert data.outcomes.set_index("lead_id")["outcome"].to_dict() == {"0": "won", "1": "lost", "5": "won"}
    counts = {reason: n for (_, reason), n in data.report.counts.items()}
    assert [n for reason, n in counts.items() if "'Pending'" in reason] == [2]
    assert [n for reason, n in counts.items() if "'On hold'" in reason] == [1]


def test_a_refusal_shows_the_validation_report_first(tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    """Every outcome in a company's own stage names: the dropped outcomes, by value, come before the refusal."""
    stages = {"won": "Signed", "lost": "Churned"}
    directory = write(
        tmp_path / "own",
        {**tables, "outcomes": tables["outcomes"].assign(outcome=tables["outcomes"]["outcome"].map(stages))},
    )
    run = leadscore_in_process(tmp_path / "home", "train", "--data", str(directory), "--data-end", "2026-07-01")
    assert run.returncode == 2, run.stdout + run.stderr
    output = run.stdout + run.stderr
    assert "Traceback" not in output
    assert "unknown outcome value 'Signed'" in output and "unknown outcome value 'Churned'" in output
    assert output.index("unknown outcome value 'Signed'") < output.index("error:")


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "binary bytes named .csv": (lambda d: (d / "leads.csv").write_bytes(bytes(range(256)) * 40), "leads.csv"),
    "ragged rows": (
        lambda d: (d / "leads.csv").write_text("lead_id,created_at\n1,2026-01-01\n2,2026-01-02,extra,more\n"),
        "line 3",
    ),
    "an empty file": (lambda d: (d / "leads.csv").write_bytes(b""), "leads.csv"),
    "a text file named .xlsx": (lambda d: (d / "leads.xlsx").write_text("lead_id,created_at\n"), "leads.xlsx"),
    "an ambiguous date column": (
        lambda d: (d / "leads.csv").write_text("lead_id,created_at\n1,01/02/2026\n2,03/04/2026\n"),
        "column 'created_at'",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_no_broken_file_makes_the_cli_print_a_traceback(case: str, tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "outcomes.csv").write_text("lead_id,outcome,closed_at\n1,won,2026-02-01\n")
    writer, says = BROKEN[case]
    writer(directory)
    run = leadscore_in_process(tmp_path / "home", "train", "--data", str(directory))  # a traceback fails it
    output = run.stdout + run.stderr
    assert run.returncode == 2 and "Traceback" not in output, output
    assert says in output, output


def test_numeric_ids_from_parquet_are_text_without_a_decimal_point(tmp_path: Path) -> None:
    pd.DataFrame(
        {"lead_id": [17.0, 18.0], "created_at": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True)}
    ).to_parquet(tmp_path / "leads.parquet")
    pd.DataFrame(
        {"lead_id": np.array([17], dtype=np.int64), "outcome": ["won"], "closed_at": ["2026-01-03"]}
    ).to_parquet(tmp_path / "outcomes.parquet")
    data = load(tmp_path)
    assert data.leads["lead_id"].tolist() == ["17", "18"]
    assert data.outcomes["lead_id"].tolist() == ["17"]


# ---- the README's two recipes, run as written there on synthetic files of that shape ----


def readme_command(starts: str) -> list[str]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (line,) = [x for x in readme.splitlines() if x.startswith(starts)]
    return shlex.split(line)[1:]  # without "leadscore"


def demo_flat(n_leads: int = 6000) -> pd.DataFrame:
    demo = generate_demo_data(n_leads=n_leads, seed=11)
    flat = demo.leads.merge(demo.outcomes[["lead_id", "outcome", "closed_at"]], on="lead_id", how="left")
    return flat.assign(won=flat["outcome"].eq("won"), closed_at=flat["closed_at"].where(flat["outcome"].eq("won")))


def salesforce_report(flat: pd.DataFrame) -> pd.DataFrame:
    """A Salesforce lead report: 18-character ids, US dates with AM/PM in the org's time zone, a date-only
    Converted Date, a Status that sales fill in, Converted as 1/0."""
    local = flat["created_at"].dt.tz_convert("America/New_York")
    converted = flat["closed_at"].dt.tz_convert("America/New_York")
    rng = np.random.default_rng(0)
    status = np.where(
        flat["won"], "Closed - Converted", rng.choice(["Open", "Working", "Closed - Not Converted"], len(flat))
    )
    return pd.DataFrame(
        {
            "Lead ID": "00Q5e0000" + flat["lead_id"].str[1:] + "AB",
            "Company": "Company " + flat["lead_id"].str[-4:],
            "Created Date": local.dt.strftime("%m/%d/%Y %I:%M %p"),
            "Lead Source": flat["lead_source"].str.replace("_", " ").str.title(),
            "Industry": flat["industry"].str.title(),
            "Annual Revenue": flat["annual_revenue_musd"].mul(1e6).round(),
            "Status": status,
            "Converted": flat["won"].astype(int),
            "Converted Date": converted.dt.strftime("%m/%d/%Y"),
        }
    )


def hubspot_contacts(flat: pd.DataFrame) -> pd.DataFrame:
    """A HubSpot contacts export: numeric record ids, times in the portal's zone without offset, a lifecycle
    stage (customer when converted), Original Source in HubSpot's upper-case names."""
    local = flat["created_at"].dt.tz_convert("Europe/Berlin")
    customer = flat["closed_at"].dt.tz_convert("Europe/Berlin")
    rng = np.random.default_rng(1)
    stages = rng.choice(["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead"], len(flat))
    return pd.DataFrame(
        {
            "Record ID": (np.arange(len(flat)) + 51_000_000_001).astype(str),
            "Create Date": local.dt.strftime("%Y-%m-%d %H:%M"),
            "Lifecycle Stage": np.where(
                flat["won"], rng.choice(["customer", "evangelist"], len(flat), p=[0.8, 0.2]), stages
            ),
            "Became a Customer Date": customer.dt.strftime("%Y-%m-%d %H:%M"),
            "Original Source": flat["lead_source"].str.upper(),
            "Industry": flat["industry"],
            "Number of Employees": flat["company_size"],
            "Country/Region": flat["country"],
        }
    )


RECIPES = {
    "leadscore train --data salesforce_leads.csv": ("salesforce_leads.csv", salesforce_report),
    "leadscore train --data hubspot_contacts.csv": ("hubspot_contacts.csv", hubspot_contacts),
}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_the_readme_recipes_train_on_exports_of_that_shape(recipe: str, tmp_path: Path) -> None:
    file_name, make = RECIPES[recipe]
    flat = demo_flat()
    make(flat).to_csv(tmp_path / file_name, index=False)
    args = readme_command(recipe)
    args[args.index("--data") + 1] = str(tmp_path / file_name)
    run = leadscore_in_process(tmp_path / "home", *args)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    wins = int(flat["won"].sum())
    assert f"{wins:,} converted" in output  # every converted lead was read as converted
    assert "dropped" not in output  # no row lost (a same-day date-only close is taken as at creation)
    assert "model: leadscore version 1" in output


# ---- what a review of issue 13 broke ----


def test_a_value_named_lost_is_lost_even_when_the_built_in_list_says_won(tmp_path: Path) -> None:
    """Many companies call a lead 'Converted' when it becomes an opportunity, not a win."""
    (tmp_path / "leads.csv").write_text("lead_id,created_at\n1,2026-01-01\n2,2026-01-02\n3,2026-01-03\n")
    (tmp_path / "outcomes.csv").write_text(
        "lead_id,outcome,closed_at\n1,Signed,2026-01-20\n2,Converted,2026-01-20\n3,1.0,2026-01-20\n"
    )
    data = load(tmp_path, won_values=("Signed",), lost_values=("Converted",))
    assert data.outcomes.set_index("lead_id")["outcome"].to_dict() == {"1": "won", "2": "lost", "3": "won"}


def test_rows_with_a_field_more_than_the_header(tmp_path: Path) -> None:
    """A trailing delimiter on every row reads as the header says; a real extra field is refused by file."""
    (tmp_path / "leads.csv").write_text("lead_id,created_at,source\n1,2026-01-01,web,\n2,2026-01-02,ads,\n")
    (tmp_path / "outcomes.csv").write_text("lead_id,outcome,closed_at\n1,won,2026-01-20\n")
    assert load(tmp_path).leads["lead_id"].tolist() == ["1", "2"]
    (tmp_path / "leads.csv").write_text("lead_id,created_at,source\nA,1,2026-01-01,web\nB,2,2026-01-02,ads\n")
    with pytest.raises(DataValidationError, match=r"leads\.csv: some rows have more fields than the header"):
        load(tmp_path)


def test_a_flat_exports_time_column_is_named_as_in_the_file(tmp_path: Path) -> None:
    (tmp_path / "export.csv").write_text("Lead ID,Created Date,Converted\n001,01/02/2026,1\n002,03/04/2026,0\n")
    options = FlatExportOptions(id_column="Lead ID", time_column="Created Date", label_column="Converted")
    with pytest.raises(DataValidationError, match="column 'Created Date'"):
        load_crm_data(tmp_path / "export.csv", flat=options)


def test_decimal_commas_in_a_european_unicode_text_export(tmp_path: Path) -> None:
    text = (
        "lead_id\tcreated_at\tbudget\n1\t31.12.2025 14:56\t12,5\n2\t15.01.2026 10:00\t1.234,5\n3\t16.01.2026 09:00\t3\n"
    )
    (tmp_path / "leads.txt").write_bytes(text.encode("utf-16"))
    (tmp_path / "outcomes.txt").write_bytes("lead_id\toutcome\tclosed_at\n1\twon\t20.01.2026 10:00\n".encode("utf-16"))
    data = load(tmp_path)
    assert data.leads["budget"].tolist() == [12.5, 1234.5, 3.0]
    assert data.leads["created_at"].iloc[0] == pd.Timestamp("2025-12-31 14:56", tz="UTC")


@pytest.mark.parametrize(
    ("content", "inputs", "says"),
    [
        (b"lead_id,created_at\n1,2026-01-01\x00\x00\n", {}, "not a text table"),
        ("lead_id,created_at\n1,2026-01-01\n".encode("utf-16-le"), {}, "leads.csv"),
        (b"lead_id,created_at\n1,2026-01-01\n", {"read": ReadOptions(encoding="utf-16")}, "--encoding"),
        (b"lead_id,created_at\n1,2026-01-01\n", {"time": TimeOptions(date_format="nonsense")}, "strftime"),
        (
            b"lead_id,created_at\n1,2025-12-31T100000Z\n",
            {"time": TimeOptions(timezone="America/New_York")},
            "created_at",
        ),
        (b"lead_id,created_at\n1,2026-01-01\n", {"read": ReadOptions(delimiter=";")}, "read as CSV"),
    ],
)
def test_broken_files_and_options_are_refused_by_name(tmp_path: Path, content: bytes, inputs: dict, says: str) -> None:
    (tmp_path / "leads.csv").write_bytes(content)
    (tmp_path / "outcomes.csv").write_text("lead_id,outcome,closed_at\n1,won,2026-01-20\n")
    with pytest.raises(DataValidationError) as err:
        load(tmp_path, **inputs)
    assert says in str(err.value) and "leads.csv" in str(err.value)


def test_each_workbook_of_a_directory_can_name_its_own_sheet(tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    directory = tmp_path / "books"
    directory.mkdir()
    for name, sheet in (("leads", "Leads"), ("touchpoints", "Activities"), ("outcomes", "Deals")):
        frame = tables[name].head(40)
        with pd.ExcelWriter(directory / f"{name}.xlsx", engine="openpyxl") as book:
            pd.DataFrame({"note": ["cover"]}).to_excel(book, sheet_name="Info", index=False)
            frame.assign(**{TIMES[name]: frame[TIMES[name]].dt.tz_localize(None)}).to_excel(
                book, sheet_name=sheet, index=False
            )
    data = load(directory, sheets={"leads": "Leads", "touchpoints": "Activities", "outcomes": "Deals"})
    assert len(data.leads) == 40 and data.report.formats["outcomes.xlsx"] == "Excel workbook, sheet 'Deals' (given)"
    with pytest.raises(DataValidationError, match=r"sheet 'Info' \(first sheet\): check --delimiter"):
        load(directory)  # the first sheet is a cover: the message says which sheet was read
    run = leadscore_in_process(
        tmp_path / "home",
        "train",
        "--data",
        str(directory),
        "--sheet",
        "leads=Leads, touchpoints=Activities,outcomes=Deals",
    )
    assert run.returncode == 2 and "Traceback" not in run.stdout + run.stderr  # 40 leads: too few to train
    assert "outcomes.xlsx: Excel workbook, sheet 'Deals' (given)" in run.stdout + run.stderr
    bad = leadscore_in_process(tmp_path / "home", "train", "--data", str(directory), "--sheet", "deals=Deals")
    assert bad.returncode == 2 and "--sheet" in bad.stdout + bad.stderr


def test_a_semicolon_file_with_thousands_groups_and_no_decimal_comma_says_how_it_read_them(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text("lead_id;created_at;budget\n1;2026-01-01;1.500\n2;2026-01-02;12.000\n")
    (tmp_path / "outcomes.csv").write_text("lead_id;outcome;closed_at\n1;won;2026-01-20\n")
    data = load(tmp_path)
    assert data.leads["budget"].tolist() == [1.5, 12.0]
    assert "no cell tells the decimal mark of 'budget'" in data.report.formats["leads.csv"]
    assert load(tmp_path, read=ReadOptions(decimal=",")).leads["budget"].tolist() == [1500.0, 12000.0]


def test_long_numeric_ids_in_a_workbook_are_noted(tmp_path: Path) -> None:
    """Excel keeps 15 significant digits of a number: an 18-digit id stored as a number was rounded."""
    pd.DataFrame({"lead_id": [123456789012345678, 17], "created_at": ["2026-01-01", "2026-01-02"]}).to_excel(
        tmp_path / "leads.xlsx", index=False
    )
    (tmp_path / "outcomes.csv").write_text("lead_id,outcome,closed_at\n17,won,2026-01-20\n")
    data = load(tmp_path)
    (note,) = [n for n in data.report.notes if "16 or more digits" in n]
    assert note.startswith("leads.xlsx, column 'lead_id': 1 id(s)")


def test_a_parquet_column_of_lists_is_refused_by_name(tmp_path: Path) -> None:
    created = pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True)
    pd.DataFrame({"lead_id": ["L1", "L2"], "created_at": created, "tags": [["a", "b"], ["c"]]}).to_parquet(
        tmp_path / "leads.parquet"
    )
    (tmp_path / "outcomes.csv").write_text("lead_id,outcome,closed_at\nL1,won,2025-03-01\n")
    with pytest.raises(DataValidationError, match=r"leads\.parquet, column 'tags': the column holds lists"):
        load(tmp_path)


@pytest.mark.parametrize(
    ("option", "says"), [({"encoding": "hex"}, "not a text encoding"), ({"delimiter": "\n"}, "line break")]
)
def test_options_that_cannot_read_text_are_refused(tmp_path: Path, option: dict, says: str) -> None:
    (tmp_path / "leads.csv").write_text("lead_id,created_at\n1,2026-01-01\n")
    (tmp_path / "outcomes.csv").write_text("lead_id,outcome,closed_at\n1,won,2026-01-20\n")
    with pytest.raises(DataValidationError, match=says):
        load(tmp_path, read=ReadOptions(**option))


def test_ids_stay_as_written_across_files_when_numbers_have_decimal_commas(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text("lead_id;created_at;revenue\n1.001;2025-01-01;1,5\n2.002;2025-01-02;2,5\n")
    (tmp_path / "outcomes.csv").write_text("lead_id;outcome;closed_at\n1.001;won;2025-03-01\n")
    data = load(tmp_path)
    assert data.leads["lead_id"].tolist() == ["1.001", "2.002"] and data.leads["revenue"].tolist() == [1.5, 2.5]
    assert data.outcomes["lead_id"].tolist() == ["1.001"]


def test_a_flat_row_with_a_close_date_but_not_converted_is_noted(tmp_path: Path) -> None:
    """HubSpot: a customer who became an Evangelist keeps its 'Became a Customer Date'."""
    (tmp_path / "contacts.csv").write_text(
        "Record ID,Create Date,Lifecycle Stage,Became a Customer Date\n"
        "1,2025-01-01 10:00,customer,2025-02-01 10:00\n2,2025-01-02 10:00,Evangelist,2025-02-03 10:00\n"
        "3,2025-01-03 10:00,lead,\n"
    )
    options = FlatExportOptions(
        id_column="Record ID", time_column="Create Date", label_column="Lifecycle Stage",
        positive_label="customer", close_column="Became a Customer Date",
    )  # fmt: skip
    data = load_crm_data(tmp_path / "contacts.csv", flat=options)
    (note,) = [n for n in data.report.notes if "have a 'Became a Customer Date'" in n]
    assert note.startswith("contacts.csv: 1 row(s)") and "'Evangelist' 1" in note and "--won-values" in note


# ---- what a third review broke ----


def test_an_unreadable_optional_number_is_missing_and_counted_not_a_lost_row(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text("lead_id,created_at\na,2025-01-01\nb,2025-01-02\nc,2025-01-03\n")
    (tmp_path / "touchpoints.csv").write_text(
        "lead_id,occurred_at,touch_type,value\na,2025-01-03,call,n/a\nb,2025-01-04,call,1.5\nc,2025-01-04,call,lots\n"
    )
    (tmp_path / "outcomes.csv").write_text(
        'lead_id,outcome,closed_at,amount\na,won,2025-02-01,"$7,000.00"\nb,lost,2025-02-02,-\n'
        'c,won,2025-02-03,"7.000,50 €"\n'
    )
    data = load(tmp_path)
    assert data.report.dropped == 0
    assert data.outcomes["amount"].tolist()[0] == 7000.0 and np.isnan(data.outcomes["amount"].tolist()[1])
    assert data.outcomes["amount"].tolist()[2] == 7000.5
    assert data.touchpoints is not None and len(data.touchpoints) == 3
    assert np.isnan(data.touchpoints["value"].tolist()[0]) and data.touchpoints["value"].tolist()[1] == 1.5
    (note,) = [n for n in data.report.notes if "column 'value'" in n]
    assert note == (
        "touchpoints.csv, column 'value': 1 value(s) are not numbers and are read as missing (first: line 4, "
        "'lots'); the rows are kept"
    )


@pytest.mark.parametrize("column", ["outcome", "lead_id"])
def test_lists_in_any_parquet_column_are_refused_by_name(tmp_path: Path, column: str) -> None:
    created = pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True)
    pd.DataFrame({"lead_id": ["L1", "L2"], "created_at": created}).to_parquet(tmp_path / "leads.parquet")
    outcomes = pd.DataFrame({"lead_id": ["L1"], "outcome": ["won"], "closed_at": ["2025-03-01"]})
    outcomes[column] = pd.Series([["x"]], dtype=object)
    outcomes.to_parquet(tmp_path / "outcomes.parquet")
    with pytest.raises(DataValidationError, match=rf"outcomes\.parquet, column '{column}': the column holds lists"):
        load(tmp_path)


def test_swiss_numbers_and_a_decimal_mark_shown_by_another_file_of_the_export(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text("lead_id;created_at;rev\na;2025-01-01;1'234.50\nb;2025-01-02;12.50\n")
    (tmp_path / "outcomes.csv").write_text("lead_id;outcome;closed_at\na;won;2025-02-01\n")
    assert load(tmp_path).leads["rev"].tolist() == [1234.5, 12.5]
    # German export: the leads show a decimal comma; the outcomes' whole thousands follow it
    (tmp_path / "leads.csv").write_text("lead_id;created_at;rev\na;2025-01-01;1,5\nb;2025-01-02;2\n")
    (tmp_path / "outcomes.csv").write_text("lead_id;outcome;closed_at;amount\na;won;2025-02-01;7.000\n")
    data = load(tmp_path)
    assert data.outcomes["amount"].tolist() == [7000.0]


def test_a_utc_suffix_is_read_on_any_date_form(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text("lead_id,created_at\na,12/31/2025 2:56 PM GMT\nb,01/02/2026 10:00 AM GMT\n")
    (tmp_path / "outcomes.csv").write_text("lead_id,outcome,closed_at\na,won,Jan 5 2026 10:00 UTC\n")
    data = load(tmp_path, time=TimeOptions(timezone="Europe/Berlin"))  # the suffix beats the zone option
    assert data.leads["created_at"].tolist()[0] == pd.Timestamp("2025-12-31 14:56", tz="UTC")
    assert data.outcomes["closed_at"].tolist() == [pd.Timestamp("2026-01-05 10:00", tz="UTC")]


@pytest.mark.parametrize(
    "options",
    [
        ("--won-values", "Signed", "--lost-values", "signed"),
        ("--dayfirst", "--date-format", "%d/%m/%Y"),
        ("--sheet", "leads=A,leads=B"),
        ("--sheet", "leads="),
    ],
)
def test_contradictory_options_are_refused(tmp_path: Path, options: tuple[str, ...]) -> None:
    (tmp_path / "leads.csv").write_text("lead_id,created_at\na,2025-01-01\n")
    (tmp_path / "outcomes.csv").write_text("lead_id,outcome,closed_at\na,won,2025-02-01\n")
    run = leadscore_in_process(tmp_path / "home", "train", "--data", str(tmp_path), *options)
    output = run.stdout + run.stderr
    assert run.returncode == 2 and "Traceback" not in output and "Invalid value" in output, output
