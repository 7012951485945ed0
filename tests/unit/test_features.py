"""Point-in-time features: only what was known at as_of counts, training and serving agree."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from features import (
    FeatureSpec,
    LeadRecord,
    TouchRecord,
    build_features,
    build_features_from_records,
    infer_spec,
)
from features.build import datetimes_to_ns, to_utc_ns
from features.kernel import NEVER_DAYS
from features.spec import (
    attribute_number,
    category_key,
    factorize_values,
    normalize_label,
    number_evidence,
    reads_as_numbers,
)
from tests.factories import T0, days, frame, make_lead, make_touch, records_from_frames
from training.demo_data import generate_demo_data

SPEC = FeatureSpec(
    channels=("email", "web"),
    numeric_attributes=("annual_revenue_musd",),
    categorical_attributes={"lead_source": ("referral", "paid_search"), "industry": ("software",)},
)
TYPES = ["web_visit", "email_open", "pricing_page", "demo_request", "call", "proposal", "carrier_pigeon"]


def features_of(leads: list[dict], touches: list[dict], as_of, spec: FeatureSpec = SPEC) -> pd.DataFrame:
    columns = ["lead_id", "occurred_at", "touch_type", "channel", "campaign", "value"]
    return build_features(frame(leads), frame(touches, columns), as_of, spec)


def test_counts_only_touches_at_or_before_as_of() -> None:
    touches = [make_touch(occurred_at=T0 + days(d)) for d in (1, 2, 3, 10)]
    f = features_of([make_lead()], touches, T0 + days(3)).iloc[0]
    assert f["n_web_visit_all"] == 3  # the touch on day 3 is exactly at as_of and counts; day 10 does not
    assert f["n_touches_7d"] == 3
    assert f["days_since_last_touch"] == pytest.approx(0.0)
    assert f["days_since_first_touch"] == pytest.approx(2.0)
    assert f["days_since_created"] == pytest.approx(3.0)


def test_windows_split_counts_by_age() -> None:
    touches = [make_touch(occurred_at=T0 + days(d)) for d in (1, 50, 95, 99)]
    f = features_of([make_lead()], touches, T0 + days(100)).iloc[0]
    assert (f["n_web_visit_7d"], f["n_web_visit_30d"], f["n_web_visit_90d"], f["n_web_visit_all"]) == (2, 2, 3, 4)
    assert f["velocity_30d"] == 2 - 1  # two in the last 30 days (ages 1, 5), one in the 30 before (age 50)


def test_unknown_touch_types_and_channels_go_to_other() -> None:
    touches = [make_touch(touch_type="Carrier Pigeon", channel="sky"), make_touch(touch_type="Web Visit")]
    f = features_of([make_lead()], touches, T0 + days(5)).iloc[0]
    assert f["n_other_all"] == 1
    assert f["n_web_visit_all"] == 1  # labels are normalised: "Web Visit" is web_visit
    assert f["n_ch_other_all"] == 1


def test_unknown_categories_and_bad_numbers_do_not_crash() -> None:
    lead = make_lead(lead_source="carrier pigeon", industry=None, annual_revenue_musd="lots")
    f = features_of([lead], [], T0 + days(1)).iloc[0]
    assert np.isnan(f["attr_lead_source"]) and np.isnan(f["attr_industry"]) and np.isnan(f["attr_annual_revenue_musd"])
    known = features_of([make_lead()], [], T0 + days(1)).iloc[0]
    assert known["attr_lead_source"] == 0 and known["attr_annual_revenue_musd"] == pytest.approx(12.5)


def test_equal_touches_each_count() -> None:
    # Two calls on one date of a date-only export are equal in lead, time, type and channel, and are two calls.
    touch = make_touch(occurred_at=T0 + days(1), touch_type="call")
    f = features_of([make_lead()], [touch, dict(touch)], T0 + days(2)).iloc[0]
    assert f["n_call_all"] == 2 and f["n_touches_7d"] == 2
    assert f["days_since_last_touch"] == pytest.approx(1.0) and f["days_since_first_touch"] == pytest.approx(1.0)


def test_high_intent_flags_say_how_long_ago() -> None:
    touches = [make_touch(touch_type="demo_request", occurred_at=T0 + days(d)) for d in (2, 7)]
    f = features_of([make_lead()], touches, T0 + days(10)).iloc[0]
    assert f["days_since_demo_request"] == pytest.approx(3.0)
    assert f["days_since_pricing_page"] == NEVER_DAYS


def test_naive_timestamps_mean_utc() -> None:
    aware = features_of([make_lead()], [make_touch()], T0 + days(3))
    naive_lead = make_lead(created_at=T0.replace(tzinfo=None))
    naive_touch = make_touch(occurred_at=(T0 + days(1)).replace(tzinfo=None))
    naive = features_of([naive_lead], [naive_touch], (T0 + days(3)).replace(tzinfo=None))
    pd.testing.assert_frame_equal(aware, naive)


def test_several_snapshots_per_lead_each_see_their_own_past() -> None:
    touches = [make_touch(occurred_at=T0 + days(d)) for d in (1, 5, 9)]
    leads = [make_lead(), make_lead(), make_lead()]
    as_of = [T0 + days(2), T0 + days(6), T0 + days(10)]
    f = features_of(leads, touches, as_of)
    assert f["n_web_visit_all"].tolist() == [1, 2, 3]


touch_strategy = st.fixed_dictionaries(
    {
        "offset_hours": st.floats(min_value=-24 * 400, max_value=24 * 400, allow_nan=False),
        "touch_type": st.sampled_from(TYPES),
        "channel": st.sampled_from(["email", "web", "sky", None]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    past=st.lists(touch_strategy, max_size=25),
    future=st.lists(touch_strategy, min_size=1, max_size=25),
    as_of_hours=st.floats(min_value=0, max_value=24 * 500, allow_nan=False),
)
def test_appending_touches_after_as_of_never_changes_features(past, future, as_of_hours) -> None:
    as_of = T0 + timedelta(hours=as_of_hours)

    def touch(spec: dict, base) -> dict:
        return make_touch(occurred_at=base, touch_type=spec["touch_type"], channel=spec["channel"])

    known = [touch(t, min(as_of, as_of + timedelta(hours=t["offset_hours"]))) for t in past]
    later = [touch(t, as_of + timedelta(hours=abs(t["offset_hours"])) + timedelta(microseconds=1)) for t in future]
    before = features_of([make_lead()], known, as_of)
    after = features_of([make_lead()], known + later, as_of)
    pd.testing.assert_frame_equal(before, after)
    records = [
        LeadRecord(
            "L1", T0, make_lead(), [TouchRecord(t["occurred_at"], t["touch_type"], t["channel"]) for t in known + later]
        )
    ]
    np.testing.assert_array_equal(build_features_from_records(records, as_of, SPEC), before.to_numpy())


@pytest.fixture(scope="module")
def demo():
    return generate_demo_data(n_leads=3_000, seed=11)


def test_same_lead_alone_or_in_a_batch_of_thousands_gets_identical_features(demo) -> None:
    spec = infer_spec(demo.leads, demo.touchpoints)
    as_of = demo.end - pd.Timedelta(days=30)
    batch = build_features(demo.leads, demo.touchpoints, as_of, spec)
    for i in (0, 17, 1234, len(demo.leads) - 1):
        lead = demo.leads.iloc[[i]]
        alone = build_features(lead, demo.touchpoints[demo.touchpoints.lead_id == lead.lead_id.iloc[0]], as_of, spec)
        np.testing.assert_array_equal(alone.to_numpy(), batch.iloc[[i]].to_numpy())


def test_records_path_equals_frame_path(demo) -> None:
    spec = infer_spec(demo.leads, demo.touchpoints)
    as_of = (demo.end - pd.Timedelta(days=60)).to_pydatetime()
    sample = demo.leads.iloc[:300]
    records = records_from_frames(sample, demo.touchpoints)
    from_frames = build_features(sample, demo.touchpoints, as_of, spec).to_numpy()
    np.testing.assert_array_equal(build_features_from_records(records, as_of, spec), from_frames)


def test_spec_round_trips_through_json(demo) -> None:
    leads = demo.leads[["lead_id", "created_at", "lead_source", "job_level", "industry", "country"]]
    spec = infer_spec(leads, demo.touchpoints, exclude_columns=("country",), half_life_days=7.0)
    again = FeatureSpec.from_json(spec.to_json())
    assert again == spec
    assert again.feature_names == spec.feature_names  # column order survives, not just content
    assert "attr_country" not in again.feature_names and again.excluded_columns == ("country",)


def test_records_path_counts_every_touch_whatever_the_order() -> None:
    a, b = make_lead(lead_id="a"), make_lead(lead_id="b", lead_source="paid_search")
    touches = [
        make_touch(lead_id="a", occurred_at=T0 + days(3), touch_type="email_open", channel="email"),
        make_touch(lead_id="b", occurred_at=T0 + days(1)),
        make_touch(lead_id="a", occurred_at=T0 + days(1)),
        make_touch(lead_id="a", occurred_at=T0 + days(3), touch_type="email_open", channel="email"),  # equal
        make_touch(lead_id="a", occurred_at=T0 + days(3), touch_type="email_open", channel="web"),
    ]
    as_of = T0 + days(4)
    records = records_from_frames(frame([a, b]), frame(touches))
    expected = features_of([a, b], [touches[i] for i in (4, 3, 2, 1, 0)], as_of)
    np.testing.assert_array_equal(build_features_from_records(records, as_of, SPEC), expected.to_numpy())
    # lead a: three email opens on day 3 (two equal) and a web visit on day 1
    assert expected.iloc[0]["n_email_open_all"] == 3 and expected.iloc[0]["n_touches_all"] == 4
    assert expected.iloc[0]["n_ch_email_all"] == 2 and expected.iloc[0]["n_ch_web_all"] == 2


@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
            st.none() | st.integers(min_value=-14 * 60, max_value=14 * 60),
        ),
        max_size=50,
    )
)
@settings(max_examples=200, deadline=None)
def test_vectorised_timestamps_are_exact_to_the_microsecond(values) -> None:
    times = [t if minutes is None else t.replace(tzinfo=timezone(timedelta(minutes=minutes))) for t, minutes in values]
    expected = [int(to_utc_ns(t)[0]) for t in times]  # pandas, one at a time
    assert datetimes_to_ns(times).tolist() == expected
    assert datetimes_to_ns([datetime(1970, 1, 1, tzinfo=UTC)]).tolist() == [0]


def test_times_beyond_int64_nanoseconds_are_held_at_the_bounds_not_wrapped() -> None:
    far = datetimes_to_ns([datetime(9999, 12, 31, tzinfo=UTC), datetime(1, 1, 1), datetime(2262, 4, 11, tzinfo=UTC)])
    bound = np.iinfo(np.int64).max // 1000 * 1000  # the last whole microsecond int64 nanoseconds hold
    assert far.tolist() == [bound, -bound, int(to_utc_ns(datetime(2262, 4, 11, tzinfo=UTC))[0])]  # (pandas)


# ---- one reading of every value: the same value reads the same from CSV, Parquet and JSON ----------------
@pytest.mark.parametrize(
    ("value", "key"),
    [
        # missing, blank and placeholders (compared after whitespace and case): no category
        (None, None),
        (math.nan, None),
        (pd.NA, None),
        ("", None),
        ("   ", None),
        ("Select", None),
        (" n/a ", None),
        ("NULL", None),
        ("-", None),
        ("Unknown", None),
        ("NaN", None),  # spells a number that is no number
        # booleans, as values or as text in any case and padding
        (True, "true"),
        (np.True_, "true"),
        (False, "false"),
        ("TRUE", "true"),
        (" true ", "true"),
        ("False", "false"),
        # numbers, as values or as text: written shortest
        (5, "5"),
        (5.0, "5"),
        (np.int64(5), "5"),
        (np.float32(5.0), "5"),
        ("5", "5"),
        (" 5.0 ", "5"),
        ("1E3", "1000"),
        (-0.0, "0"),
        (0.25, "0.25"),
        ("0.250", "0.25"),
        # other text: words joined by one space, case folded
        ("  Software ", "software"),
        ("SOFTWARE", "software"),
        ("Paid \t Search", "paid search"),
        ("51-200", "51-200"),
        ("1_10", "1_10"),  # digit separators are not read: a size band stays a label, not 110
        ("yes", "yes"),  # yes/no are texts, not booleans
    ],
)
def test_category_key_reads_every_spelling_of_a_value_alike(value: object, key: str | None) -> None:
    assert category_key(value) == key


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (3.5, 3.5),
        (7, 7.0),
        (np.int64(7), 7.0),
        (True, 1.0),
        (np.False_, 0.0),
        ("true", 1.0),
        (" FALSE ", 0.0),
        (" 3 ", 3.0),
        ("3.0", 3.0),
        ("1e3", 1000.0),
        (None, math.nan),
        ("", math.nan),
        ("Select", math.nan),
        ("n/a", math.nan),
        ("lots", math.nan),
        ("1_000", math.nan),
        (math.inf, math.nan),
        ("-Infinity", math.nan),
        (10**400, math.nan),  # beyond float
    ],
)
def test_attribute_number_reads_every_spelling_of_a_number_alike(value: object, number: float) -> None:
    got = attribute_number(value)
    assert got == number or (math.isnan(got) and math.isnan(number))


VALUES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["Select", " n/a", "TRUE", " 5.0 ", "1e3", "Software ", "inf", "-0", "0.1"])
)


@settings(max_examples=500, deadline=None)
@given(VALUES)
@example(-0.0)  # reads 0.0, as its key "0" does
@example(10**30)
def test_reading_a_key_again_gives_it_back(value: object) -> None:
    # What lets a vocabulary of keys be looked up with the raw value first: a key reads as itself, and a
    # number key reads as the same number as the value it came from.
    key = category_key(value)
    if key is not None:
        assert category_key(key) == key
        np.testing.assert_equal(attribute_number(key), attribute_number(value))


@pytest.mark.parametrize(
    ("values", "numeric"),
    [
        (["1", "0", " 2.5 "], True),
        (["1", "true", None, "n/a"], True),  # booleans among numbers read as 1/0
        ([True, 1], True),
        (["true", "FALSE"], False),  # booleans alone are a category
        ([True, False], False),
        (["1", "x"], False),
        (["1_10", "11-50"], False),
        ([], False),
        ([None, "Select"], False),
    ],
)
def test_reads_as_numbers(values: list[object], numeric: bool) -> None:
    assert reads_as_numbers(values) is numeric


def test_the_evidence_of_a_columns_parts_gives_the_whole_columns_reading() -> None:
    """Parts of one column (partitions) decide its reading together: (numbers, other) of each part, or-ed."""
    parts = [["12", None], ["Select", "true"], ["3", "lots"]]
    assert [number_evidence(p) for p in parts] == [(True, False), (False, False), (True, True)]
    assert reads_as_numbers(parts[0]) and not reads_as_numbers(parts[1])  # each part alone: one of each
    whole = [v for p in parts for v in p]
    assert not reads_as_numbers(whole)  # "lots" makes the whole column categorical
    assert reads_as_numbers(parts[0] + parts[1])  # a part of blanks and booleans alone takes the numbers


@pytest.mark.parametrize(
    ("label", "normal"), [("Web Visit", "web_visit"), (" n/a ", "other"), ("Select", "other"), ("", "other")]
)
def test_touch_labels_read_placeholders_as_missing(label: str, normal: str) -> None:
    assert normalize_label(label) == normal


def test_distinct_values_keep_booleans_apart_from_one_and_zero() -> None:
    # pandas takes True for 1 (and False for 0); their readings differ ("true" against "1")
    codes, distinct = factorize_values([True, 1, 1.0, "1", None, False, 0])
    assert codes.tolist() == [0, 1, 1, 2, -1, 3, 4]
    assert [category_key(v) for v in distinct] == ["true", "1", "1", "false", "0"]


def test_many_rows_read_as_a_few_do() -> None:
    # 130 rows take the per-distinct-value path, 2 rows the per-value one; True and 1 are two categories
    spec = FeatureSpec(categorical_attributes={"flag": ("true", "1")}, numeric_attributes=("n",), use_touches=False)
    many = frame([make_lead(flag=v, n=v) for v in [True, 1] * 65])
    few = frame([make_lead(flag=v, n=v) for v in [True, 1]])
    f_many = build_features(many, None, T0 + days(1), spec)
    f_few = build_features(few, None, T0 + days(1), spec)
    assert f_many["attr_flag"].tolist() == [0.0, 1.0] * 65 and f_many["attr_n"].tolist() == [1.0] * 130
    np.testing.assert_array_equal(f_many.to_numpy()[:2], f_few.to_numpy())


def test_infer_spec_learns_keys_and_kinds_from_raw_values() -> None:
    leads = frame(
        [
            make_lead(lead_id="a", industry=" Software ", partner=True, opted_in="1", employees=" 250 "),
            make_lead(lead_id="b", industry="software", partner=False, opted_in="true", employees="Select"),
            make_lead(lead_id="c", industry="SOFTWARE", partner=True, opted_in="0", employees="1e3"),
            make_lead(lead_id="d", industry="Finance", partner=True, opted_in=None, employees=None),
            make_lead(lead_id="e", industry="n/a", partner=False, opted_in="FALSE", employees="12"),
        ]
    )[["lead_id", "created_at", "industry", "partner", "opted_in", "employees"]]
    spec = infer_spec(leads, None, min_category_count=1)
    # three spellings of software are one category, counted 3; "n/a" is no category
    assert spec.categorical_attributes == {"industry": ("software", "finance"), "partner": ("true", "false")}
    assert spec.numeric_attributes == ("opted_in", "employees")  # numbers written as text (booleans among them)
    f = build_features(leads, None, T0 + days(1), spec)
    assert f["attr_industry"].tolist()[:4] == [0.0, 0.0, 0.0, 1.0] and np.isnan(f["attr_industry"].iloc[4])
    assert f["attr_partner"].tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]
    np.testing.assert_array_equal(f["attr_opted_in"], [1.0, 1.0, 0.0, np.nan, 0.0])
    np.testing.assert_array_equal(f["attr_employees"], [250.0, np.nan, 1000.0, np.nan, 12.0])


def test_vocabularies_of_older_specs_still_find_their_values() -> None:
    # Specs saved before the one reading hold values as they were read then: str(True) and capitalised text
    saved = {**FeatureSpec(use_touches=False).to_dict(), "version": 1}
    saved["categorical_attributes"] = {"partner": ["True", "False"], "industry": ["Software", "Finance"]}
    old = FeatureSpec.from_json(json.dumps(saved))
    sent: list[dict[str, object]] = [
        {"partner": True, "industry": "Software"},  # as an old server read them: raw value found as it is
        {"partner": "true", "industry": " software"},  # other spellings: found by their keys
        {"partner": False, "industry": "FINANCE"},
        {"partner": "maybe", "industry": None},
    ]
    records = [LeadRecord(str(i), T0, attrs) for i, attrs in enumerate(sent)]
    f = build_features_from_records(records, T0 + days(1), old)
    np.testing.assert_array_equal(f[:, -2:], [[0, 0], [0, 0], [1, 1], [np.nan, np.nan]])


def test_a_boolean_sent_to_a_yes_no_column_reads_as_yes_or_no() -> None:
    # The real export's "Do Not Email" holds Yes/No; a CRM sending JSON true/false means the same.
    leads = frame([make_lead(lead_id=str(i), dne=v) for i, v in enumerate(["No", "Yes", " yes", "NO", "No"])])
    spec = infer_spec(leads[["lead_id", "created_at", "dne"]], None, min_category_count=1)
    assert spec.categorical_attributes == {"dne": ("no", "yes")}
    sent = [True, False, "TRUE", "Yes", "maybe"]
    records = [LeadRecord(str(i), T0, {"dne": v}) for i, v in enumerate(sent)]
    np.testing.assert_array_equal(build_features_from_records(records, T0 + days(1), spec)[:, -1], [1, 0, 1, 1, np.nan])
    as_rows = frame([make_lead(lead_id=str(i), dne=v) for i, v in enumerate(sent)])[["lead_id", "created_at", "dne"]]
    np.testing.assert_array_equal(build_features(as_rows, None, T0 + days(1), spec)["attr_dne"], [1, 0, 1, 1, np.nan])
    # where true/false are values of their own, they keep their own codes
    both = FeatureSpec(categorical_attributes={"x": ("yes", "no", "true")}, use_touches=False)
    got = build_features_from_records([LeadRecord("a", T0, {"x": True})], T0 + days(1), both)
    assert got[0, -1] == 2.0


@settings(max_examples=200, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=6))
def test_raw_values_find_the_codes_their_keys_find(values: list[object]) -> None:
    keys = [k for k in dict.fromkeys(category_key(v) for v in values) if k is not None]
    spec = FeatureSpec(categorical_attributes={"x": tuple(keys[:3])}, use_touches=False)
    raw = [LeadRecord(str(i), T0, {"x": v}) for i, v in enumerate(values)]
    keyed = [LeadRecord(str(i), T0, {"x": category_key(v)}) for i, v in enumerate(values)]
    np.testing.assert_array_equal(
        build_features_from_records(raw, T0 + days(1), spec), build_features_from_records(keyed, T0 + days(1), spec)
    )


def test_free_text_touch_labels_from_many_threads_never_fail_and_read_as_one_thread_reads_them() -> None:
    """Three threads scoring leads whose touch types are free text, past the memo's bound (a memo cleared by
    one thread while another read it once raised KeyError)."""
    import sys
    import threading

    import features.build as build

    def records(thread: int, round_: int) -> list[LeadRecord]:
        touches = [
            TouchRecord(
                T0 + timedelta(hours=i), f"Free text {thread}-{round_}-{i}" if i % 2 else "Demo Request ", "web"
            )
            for i in range(20)
        ]
        return [LeadRecord(f"L{thread}", T0, make_lead(), touches)]

    expected = build_features_from_records(records(9, 0), T0 + timedelta(days=2), SPEC)
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for round_ in range(300):
                got = build_features_from_records(records(thread, round_), T0 + timedelta(days=2), SPEC)
                np.testing.assert_array_equal(got, expected)  # unknown labels are 'other' whatever the memo holds
        except BaseException as err:
            errors.append(err)

    limit, switch = build.LABEL_MEMO_LIMIT, sys.getswitchinterval()
    build.LABEL_MEMO_LIMIT = 50  # reach the bound within the test
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a race shows within the test's rounds
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        build.LABEL_MEMO_LIMIT = limit
        sys.setswitchinterval(switch)
    assert not errors, errors[0]
    assert len(build._raw_lookup(SPEC.type_vocab)) <= 50 + 3  # bounded (a few threads may add at once)
