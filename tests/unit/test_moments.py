"""Scoring moments, censoring, the end of the data and the purged split, on tiny hand-made CRMs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import DataValidationError, FlatExportOptions, InputOptions, load_crm_data
from training.moments import MomentConfig, scoring_moments
from training.pipeline import NotEnoughData, TrainConfig, split_examples
from training.timestamps import TimeOptions

UTC = "UTC"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def write_crm(directory: Path, leads: list[dict], touches: list[dict], outcomes: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(leads, columns=["lead_id", "created_at", "industry"]).to_csv(directory / "leads.csv", index=False)
    pd.DataFrame(touches, columns=["lead_id", "occurred_at", "touch_type"]).to_csv(
        directory / "touchpoints.csv", index=False
    )
    pd.DataFrame(outcomes, columns=["lead_id", "outcome", "closed_at"]).to_csv(directory / "outcomes.csv", index=False)
    return directory


def small_crm(tmp_path: Path, extra_touches: list[dict] | None = None) -> Path:
    """Three leads; L9 is created late and keeps the end of the data at 2025-06-30."""
    leads = [
        {"lead_id": "L1", "created_at": "2025-01-01T10:00:00Z", "industry": "software"},
        {"lead_id": "L2", "created_at": "2025-01-05T09:00:00Z", "industry": "retail"},
        {"lead_id": "L9", "created_at": "2025-06-30T00:00:00Z", "industry": "retail"},
    ]
    touches = [
        {"lead_id": "L2", "occurred_at": "2025-01-06T08:00:00Z", "touch_type": "web_visit"},
        {"lead_id": "L2", "occurred_at": "2025-01-06T15:00:00Z", "touch_type": "pricing_page"},
        {"lead_id": "L2", "occurred_at": "2025-01-20T11:00:00Z", "touch_type": "email_click"},
        *(extra_touches or []),
    ]
    outcomes = [
        {"lead_id": "L1", "outcome": "won", "closed_at": "2025-01-04T10:00:00Z"},
        {"lead_id": "L2", "outcome": "lost", "closed_at": "2025-03-01T00:00:00Z"},
    ]
    return write_crm(tmp_path / "crm", leads, touches, outcomes)


CONFIG = MomentConfig(horizon_days=30, every_days=20, max_lead_age_days=60)


def test_a_lead_won_three_days_after_creation_is_a_positive_example(tmp_path: Path) -> None:
    data = load_crm_data(small_crm(tmp_path))
    moments = scoring_moments(data, CONFIG)
    l1 = moments[moments["lead_id"] == "L1"]
    # Created 2025-01-01 10:00 and won 2025-01-04 10:00: one moment, at creation, labelled won; the periodic
    # moment of 2025-01-21 comes after the close, so it is not taken.
    assert l1["as_of"].tolist() == [ts("2025-01-01T10:00:00")]
    assert l1["moment"].astype(str).tolist() == ["creation"]
    assert l1["label"].tolist() == [1]


def test_a_lead_created_and_won_on_the_same_date_is_a_positive_example(tmp_path: Path) -> None:
    leads = [
        {"lead_id": "A", "created_at": "2025-01-01", "industry": "web"},
        {"lead_id": "C", "created_at": "2025-01-02", "industry": "web"},
        {"lead_id": "Z", "created_at": "2025-12-31", "industry": "web"},
    ]
    outcomes = [
        {"lead_id": "A", "outcome": "won", "closed_at": "2025-01-01"},
        {"lead_id": "C", "outcome": "lost", "closed_at": "2025-01-02"},
    ]
    data = load_crm_data(write_crm(tmp_path / "sameday", leads, [], outcomes))
    moments = scoring_moments(data, CONFIG).set_index("lead_id")
    # Date-only export: each closed the day it arrived; each is scored once, at creation, and nothing after.
    assert moments.loc[["A", "C"], "label"].tolist() == [1, 0]
    assert moments.loc[["A", "C"], "moment"].astype(str).tolist() == ["creation", "creation"]


def test_moments_are_creation_activity_days_and_periodic_while_open(tmp_path: Path) -> None:
    data = load_crm_data(small_crm(tmp_path))
    l2 = scoring_moments(data, CONFIG).query("lead_id == 'L2'")
    # Created 01-05 09:00; active on 01-06 (last touch 15:00) and 01-20; periodic at +20 and +40 days
    # (01-25, 02-14) and +60 (03-06) is after its close on 03-01. Lost: every label is 0.
    assert l2["as_of"].tolist() == [
        ts("2025-01-05T09:00"),
        ts("2025-01-06T15:00"),
        ts("2025-01-20T11:00"),
        ts("2025-01-25T09:00"),
        ts("2025-02-14T09:00"),
    ]
    assert l2["moment"].astype(str).tolist() == ["creation", "activity", "activity", "periodic", "periodic"]
    assert l2["label"].sum() == 0


def test_moments_whose_horizon_is_not_observed_are_censored(tmp_path: Path) -> None:
    data = load_crm_data(small_crm(tmp_path))
    assert data.end_time == ts("2025-06-30")
    moments = scoring_moments(data, CONFIG)
    assert (moments["as_of"] + pd.Timedelta(days=30) <= data.end_time).all()
    assert "L9" not in set(moments["lead_id"])  # created at the end: its horizon is not observed


def test_a_row_dated_2099_is_dropped_counted_and_changes_no_example(tmp_path: Path) -> None:
    clean = load_crm_data(small_crm(tmp_path / "a"))
    future = [{"lead_id": "L2", "occurred_at": "2099-01-01T00:00:00Z", "touch_type": "web_visit"}]
    dirty = load_crm_data(small_crm(tmp_path / "b", future))
    assert dirty.end_time == clean.end_time == ts("2025-06-30")
    dropped = {reason: n for (_, reason), n in dirty.report.counts.items()}
    assert [n for reason, n in dropped.items() if reason.startswith("dated after the end of the data")] == [1]
    pd.testing.assert_frame_equal(scoring_moments(dirty, CONFIG), scoring_moments(clean, CONFIG))
    with pytest.raises(DataValidationError, match=r"touchpoints\.csv, line 5, column 'occurred_at': dated after"):
        load_crm_data(small_crm(tmp_path / "c", future), strict=True)


def test_data_end_given_drops_later_rows_of_every_table(tmp_path: Path) -> None:
    data = load_crm_data(small_crm(tmp_path), data_end="2025-02-01")
    assert data.end_time == ts("2025-02-01")
    assert set(data.leads["lead_id"]) == {"L1", "L2"}  # L9 is created after the export
    assert data.outcomes["lead_id"].tolist() == ["L1"]  # L2's loss on 03-01 is not known yet: open
    assert len(data.touchpoints) == 3
    with pytest.raises(DataValidationError, match="--data-end"):
        load_crm_data(small_crm(tmp_path / "x"), data_end="not a date")


def test_a_data_end_after_the_moment_of_training_is_refused(tmp_path: Path) -> None:
    # An export cannot be taken in the future: given 2099, L9 (created 06-30, the last thing the data knows,
    # its 30-day horizon never observed) would become a "not won" example. Refused, naming the option; an
    # export time up to the clock is taken.
    with pytest.raises(DataValidationError, match=r"--data-end: 2099-01-01T00:00:00\+00:00 is after the moment"):
        load_crm_data(small_crm(tmp_path / "a"), data_end="2099-01-01")
    with pytest.raises(DataValidationError, match="after the moment of training"):
        load_crm_data(small_crm(tmp_path / "b"), data_end="2025-03-01", now=ts("2025-02-28"))
    assert load_crm_data(small_crm(tmp_path / "c"), data_end="2025-03-01", now=ts("2025-03-01")).end_time == ts(
        "2025-03-01"
    )
    # "now" is the moment of training, and a time without an offset is in --timezone, as the data's times are
    assert load_crm_data(small_crm(tmp_path / "d"), data_end="now", now=ts("2025-07-01")).end_time == ts("2025-07-01")
    berlin = InputOptions(time=TimeOptions(timezone="Europe/Berlin"))
    local = load_crm_data(small_crm(tmp_path / "e"), data_end="2025-06-30T12:00", inputs=berlin, now=ts("2025-07-01"))
    assert local.end_time == ts("2025-06-30T10:00")


def test_exclude_columns_works_for_a_data_directory(tmp_path: Path) -> None:
    data = load_crm_data(small_crm(tmp_path), exclude_columns=("industry",))
    assert "industry" not in data.leads.columns and data.excluded_columns == ("industry",)
    with pytest.raises(DataValidationError, match="column 'owner_notes': excluded column does not exist"):
        load_crm_data(small_crm(tmp_path / "y"), exclude_columns=("owner_notes",))


def daily_crm(tmp_path: Path) -> Path:
    """One lead a day for 601 days (day 0 = 2024-01-01); every third lead is won 10 days after creation, the
    others lost after 100 days; each lead has a touch on its day 5 (none after day 600, the end of the data)."""
    start = ts("2024-01-01")
    leads, touches, outcomes = [], [], []
    for d in range(601):
        created = start + pd.Timedelta(days=d)
        lead = f"L{d:03d}"
        leads.append({"lead_id": lead, "created_at": created.isoformat(), "industry": "software"})
        if d <= 595:
            touch = {"lead_id": lead, "occurred_at": (created + pd.Timedelta(days=5)).isoformat(), "touch_type": "web"}
            touches.append(touch)
        won = d % 3 == 0
        closed = created + pd.Timedelta(days=10 if won else 100)
        if closed <= start + pd.Timedelta(days=600):
            outcomes.append({"lead_id": lead, "outcome": "won" if won else "lost", "closed_at": closed.isoformat()})
    return write_crm(tmp_path / "daily", leads, touches, outcomes)


def test_purged_split_worked_out_by_hand(tmp_path: Path) -> None:
    data = load_crm_data(daily_crm(tmp_path))
    config = TrainConfig(
        data=tmp_path, horizon_days=30, moment_every_days=20, max_lead_age_days=60, test_follow_up_days=40
    )
    moments = scoring_moments(data, CONFIG)
    split = split_examples(moments, data, config, [])
    # E = day 600, H = 30, test follow-up F = 40 days: test leads are created up to day 600 - 30 - 40 = 530.
    # The span left after two gaps and the follow-up is 530 - 0 - 60 = 470 days; test and calibration get 20%
    # each (94 days): B2 = 530 - 94 = day 436, B1 = 436 - 30 - 94 = day 312.
    day = lambda d: ts("2024-01-01") + pd.Timedelta(days=d)  # noqa: E731
    train, cal, test = (moments.iloc[rows] for rows in (split.train, split.calibration, split.test))
    assert train["created_at"].max() == day(282) and train["as_of"].max() <= day(282)
    assert cal["created_at"].min() == day(312) and cal["as_of"].max() <= day(406)
    assert test["created_at"].min() == day(436) and test["created_at"].max() == day(530)
    # every test lead is followed for its first 40 days, the same for all, though moments run to 60 days
    assert (test["as_of"] - test["created_at"]).max() == pd.Timedelta(days=40)
    assert (moments["as_of"] - moments["created_at"]).max() == pd.Timedelta(days=60)
    # No label used for fitting is observed after the calibration window starts, none used for calibration
    # after the test window starts.
    assert (train["as_of"] + pd.Timedelta(days=30)).max() <= cal["created_at"].min()
    assert (cal["as_of"] + pd.Timedelta(days=30)).max() <= test["created_at"].min()
    # No lead is in two windows, and every example of a window's lead weighs 1 / its moments there.
    ids = [set(part["lead_id"]) for part in (train, cal, test)]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])
    for rows in (split.train, split.calibration, split.test):
        per_lead = pd.Series(split.weight[rows]).groupby(moments["lead_id"].to_numpy()[rows]).sum()
        np.testing.assert_allclose(per_lead.to_numpy(), 1.0)
    assert split.windows["test_leads_created"] == "2025-03-12 .. 2025-06-14"  # days 436 .. 530


def test_data_too_short_for_a_purged_split_is_refused(tmp_path: Path) -> None:
    data = load_crm_data(daily_crm(tmp_path))
    config = TrainConfig(data=tmp_path, horizon_days=200)
    with pytest.raises(NotEnoughData, match="three horizons"):
        split_examples(scoring_moments(data, MomentConfig(horizon_days=200)), data, config, [])


def test_a_data_end_before_every_lead_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"no valid lead is left \(leads\.csv: 3 rows read"):
        load_crm_data(small_crm(tmp_path), data_end="1990-01-01")
    with pytest.raises(DataValidationError, match="ISO 8601"):
        load_crm_data(small_crm(tmp_path / "us"), data_end="01/02/2026")  # month or day first? refused


def test_an_end_of_data_weeks_after_the_latest_lead_is_noted(tmp_path: Path) -> None:
    late = [{"lead_id": "L2", "occurred_at": "2025-09-01T00:00:00Z", "touch_type": "web_visit"}]
    data = load_crm_data(small_crm(tmp_path, late))  # a touch typed 2025-09 instead of 2025-01: not in the future
    assert data.end_time == ts("2025-09-01")
    assert any("63 days after the latest lead was created" in note for note in data.report.notes)
    assert not any("after the latest lead" in note for note in load_crm_data(small_crm(tmp_path / "ok")).report.notes)


def test_a_flat_export_keeps_a_lead_converted_after_the_data_end_as_not_converted_by_then(tmp_path: Path) -> None:
    # As a data directory drops only a later outcome row, a flat export keeps the lead (it existed at the
    # export time) and forgets the conversion it could not have known; a lead created later is dropped.
    path = tmp_path / "leads.csv"
    path.write_text(
        "id,created,converted,won_on\n"
        "A,2025-01-01,1,2025-01-05\n"
        "B,2025-02-01,1,2025-08-01\n"  # converted after the end: kept, not converted by 06-30
        "C,2025-07-10,0,\n"  # created after the end: dropped, counted
        "D,2025-03-01,1,2099-01-01\n"  # closed after the moment of training: a typo, dropped and counted
    )
    opts = FlatExportOptions(id_column="id", label_column="converted", time_column="created", close_column="won_on")
    data = load_crm_data(path, flat=opts, data_end="2025-06-30", now=ts("2026-01-01"))
    assert data.leads["lead_id"].tolist() == ["A", "B"]
    outcomes = data.outcomes.set_index("lead_id")
    assert outcomes.loc["A", "outcome"] == "won" and outcomes.loc["A", "closed_at"] == ts("2025-01-05")
    assert outcomes.loc["B", "outcome"] == "lost" and pd.isna(outcomes.loc["B", "closed_at"])
    assert any("1 lead(s) closed after the end of the data" in n and "line 3" in n for n in data.report.notes)
    assert data.report.dropped == 2  # C, created after the end, and D, closed after the moment of training
    counts = {reason: n for (_, reason), n in data.report.counts.items()}
    assert counts == {
        "dated after the end of the data (2025-06-30T00:00:00+00:00)": 1,  # C, created after the end
        "dated after the moment of training (2026-01-01T00:00:00+00:00)": 1,  # D, closed in 2099
    }
    no_end = load_crm_data(path, flat=opts, now=ts("2026-01-01"))  # the end: the latest time up to now
    assert "D" not in set(no_end.leads["lead_id"]) and no_end.report.dropped == 1
    assert no_end.outcomes.set_index("lead_id").loc["B", "outcome"] == "won"  # 08-01 is before the end now
    with pytest.raises(DataValidationError, match="line 3, column 'won_on': dated after the end of the data"):
        load_crm_data(path, flat=opts, data_end="2025-06-30", now=ts("2026-01-01"), strict=True)


def test_now_is_the_clocks_time_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # pandas reads "now" as the local wall clock with no zone: nine hours ahead in Tokyo, read as UTC
    import time

    from training.data import one_time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        for word in ("now", " NOW ", "today"):
            assert abs(one_time(word, "--as-of") - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=1)
        assert load_crm_data(small_crm(tmp_path), data_end="now").end_time <= pd.Timestamp.now(tz="UTC")
    finally:
        monkeypatch.undo()
        time.tzset()
