"""The replayed trade-off counts leads: hand-worked figures on a 20-lead test window, intervals over leads,
exact reverse queries, and a brute-force replay on random windows."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.threshold_analysis import Figure, TradeOff, Unreachable, median_interval, wilson

START = pd.Timestamp("2024-01-01", tz="UTC")
LEADS_PER_WEEK = 50.0
Z = 1.959963984540054

# lead: its moments as (days after creation, probability, label = won within the horizon after that moment).
# A lead won on day 100 with a 90-day horizon has label 0 at day 0 and label 1 from day 10 on ("won, but only
# within the horizon of a late hand-over").
WINDOW: dict[str, list[tuple[int, float, int]]] = {
    "L01": [(0, 0.10, 0), (7, 0.35, 1), (14, 0.60, 1)],  # rises; won within the horizon of any hand-over
    "L02": [(0, 0.20, 0), (30, 0.55, 0)],  # rises, never won
    "L03": [(0, 0.80, 1)],  # hot at creation, won
    "L04": [(0, 0.05, 0), (10, 0.25, 0), (40, 0.45, 1)],  # won only within the horizon of a late hand-over
    "L05": [(0, 0.40, 0), (20, 0.70, 1)],  # handed at creation: not won within 90 days; at day 20: won
    "L06": [(0, 0.30, 0)],
    "L07": [(0, 0.15, 0)],
    "L08": [(0, 0.60, 0), (30, 0.65, 0)],  # high from the start, never won
    "L09": [(0, 0.10, 0), (5, 0.10, 0), (20, 0.08, 0)],  # flat, then falling
    "L10": [(0, 0.45, 1)],  # won fast
    "L11": [(0, 0.25, 1)],  # won fast with a low score
    "L12": [(0, 0.50, 1)],  # exactly at the 0.5 cut-off
    "L13": [(0, 0.02, 0)],
    "L14": [(0, 0.33, 0), (14, 0.31, 0), (28, 0.52, 1)],  # dips, then rises; won late
    "L15": [(0, 0.12, 0), (60, 0.90, 0)],  # the highest probability of all, never won
    "L16": [(0, 0.22, 0)],
    "L17": [(0, 0.38, 1), (10, 0.41, 1)],
    "L18": [(0, 0.05, 0)],
    "L19": [(0, 0.28, 0), (21, 0.48, 0)],
    "L20": [(0, 0.18, 0), (3, 0.62, 1)],
}


def make_predictions(window: dict[str, list[tuple[int, float, int]]] = WINDOW) -> pd.DataFrame:
    """Stored test predictions: one row per scoring moment; leads created a day apart."""
    rows = []
    for i, (lead, moments) in enumerate(window.items()):
        created = START + pd.Timedelta(days=i)
        for days, p, label in moments:
            rows.append(
                {
                    "lead_id": lead,
                    "as_of": created + pd.Timedelta(days=days),
                    "created_at": created,
                    "probability": p,
                    "label": label,
                    "lead_source": "web",  # extra columns are ignored
                }
            )
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # stored order must not matter


def make_tradeoff(predictions: pd.DataFrame | None = None) -> TradeOff:
    return TradeOff.from_predictions(
        make_predictions() if predictions is None else predictions, LEADS_PER_WEEK, horizon_days=90
    )


# ---- figures worked out by hand --------------------------------------------------------------------
# The window's wins W (label 1 at some moment): L01 L03 L04 L05 L10 L11 L12 L14 L17 L20 -> |W| = 10.
# Labels at first moments: 1 for L03 L10 L11 L12 L17 -> base rate 5/20 = 0.25.
#
# c = 0.5: handed over (first moment with p >= 0.5, days after creation, label there)
#   L01 (d14, 1) L02 (d30, 0) L03 (d0, 1) L05 (d20, 1) L08 (d0, 0) L12 (d0, 1) L14 (d28, 1) L15 (d60, 0)
#   L20 (d3, 1) -> 9 handed, 6 won after hand-over, caught = W & handed = L01 L03 L05 L12 L14 L20 = 6.
#   days sorted 0 0 0 3 14 20 28 30 60 -> median 14.
# c = 0.4: L01 (d14, 1) L02 (d30, 0) L03 (d0, 1) L04 (d40, 1) L05 (d0, 0: now handed at creation, and not won
#   within 90 days of it) L08 (d0, 0) L10 (d0, 1) L12 (d0, 1) L14 (d28, 1) L15 (d60, 0) L17 (d10, 1)
#   L19 (d21, 0) L20 (d3, 1) -> 13 handed, 8 won after hand-over, caught 9 (all of W but L11).
#   days sorted 0 0 0 0 0 3 10 14 21 28 30 40 60 -> median 10.
# c = 0.3: as 0.4, plus L06 (d0, 0); L01 moves to d7 (label 1), L14 to d0 (label 0) -> 14 handed, 7 won after
#   hand-over, caught 9; days: eight 0s, 3 7 21 30 40 60 -> median 0.
HAND = {
    # cutoff: (handed, won after hand-over, caught, median days)
    0.5: (9, 6, 6, 14.0),
    0.4: (13, 8, 9, 10.0),
    0.3: (14, 7, 9, 0.0),
}


@pytest.mark.parametrize("cutoff", sorted(HAND))
def test_the_replay_matches_the_hand_count(cutoff: float) -> None:
    handed, won, caught, median_days = HAND[cutoff]
    a = make_tradeoff().analyze(cutoff)
    assert (a.test_leads, a.test_wins, a.test_moments) == (20, 10, 35)
    assert (a.leads_handed_over, a.wins_after_hand_over, a.wins_caught) == (handed, won, caught)
    assert a.share_qualified.value == pytest.approx(handed / 20)
    assert a.qualified_per_week.value == pytest.approx(handed / 20 * 50)
    assert a.precision.value == pytest.approx(won / handed)
    assert a.recall.value == pytest.approx(caught / 10)
    assert a.expected_wins_per_week.value == pytest.approx(caught / 20 * 50)  # every win of a handed lead
    assert a.base_rate == pytest.approx(0.25)
    assert a.lift.value == pytest.approx(won / handed / 0.25)
    assert a.median_days_to_hand_over is not None
    assert a.median_days_to_hand_over.value == pytest.approx(median_days)
    assert a.horizon_days == 90 and a.leads_per_week == 50


def test_handing_over_more_leads_never_shows_fewer_expected_wins() -> None:
    # By hand (HAND above): counting only wins within the horizon after hand-over, the figure would be
    # 6, 8, 7 leads of 20 at c = 0.5, 0.4, 0.3 (L14, handed over at creation at 0.3, closes more than 90 days
    # after it): 15, 20 and 17.5 wins a week, fewer at the lower cut-off. Every win of a handed lead: 6, 9, 9.
    trade = make_tradeoff()
    assert [trade.analyze(c).expected_wins_per_week.value for c in (0.5, 0.4, 0.3)] == pytest.approx([15, 22.5, 22.5])
    curve = [a.expected_wins_per_week.value for a in trade.curve()]  # cut-offs from the highest down
    assert all(later >= earlier for earlier, later in itertools.pairwise(curve))
    lowest = trade.analyze(float(trade.cutoffs[-1]))  # every lead handed over: every win, per week
    assert lowest.expected_wins_per_week.value == pytest.approx(10 / 20 * 50)


def test_the_figures_at_a_half_written_out() -> None:
    a = make_tradeoff().analyze(0.5)
    assert a.qualified_per_week.value == pytest.approx(22.5)  # leads handed over per week
    assert a.share_qualified.value == pytest.approx(0.45)
    assert a.precision.value == pytest.approx(2 / 3)
    assert a.recall.value == pytest.approx(0.6)
    assert a.expected_wins_per_week.value == pytest.approx(15.0)
    assert a.lift.value == pytest.approx(8 / 3)
    # 9 handed leads: P(Binomial(9, 1/2) <= 1) = 10/512 <= 0.025 < P(<= 2) = 46/512, so r = 2:
    # [x_(2), x_(8)] of 0 0 0 3 14 20 28 30 60.
    assert a.median_days_to_hand_over == Figure(14.0, 0.0, 30.0)


def test_the_hand_overs_are_the_first_moments_at_or_above_the_cutoff() -> None:
    got = make_tradeoff().hand_overs(0.4).set_index("lead_id")
    assert got.loc["L05", "days_to_hand_over"] == 0 and not got.loc["L05", "won_after_hand_over"]
    assert got.loc["L04", "days_to_hand_over"] == 40 and got.loc["L04", "won_after_hand_over"]
    assert got.loc["L17", "handed_over_at"] == START + pd.Timedelta(days=16 + 10)
    assert "L11" not in got.index and len(got) == 13


def test_a_wilson_interval_is_the_textbook_one() -> None:
    a = make_tradeoff().analyze(0.5)
    n, k = 20, 9  # leads, handed over
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
    assert (a.share_qualified.low, a.share_qualified.high) == pytest.approx((0.25819, 0.65791), abs=1e-5)
    assert (a.share_qualified.low, a.share_qualified.high) == pytest.approx((centre - half, centre + half))
    # Wilson's bounds are the proportions pi with |p - pi| = z sqrt(pi (1 - pi) / n).
    for bound in (a.share_qualified.low, a.share_qualified.high):
        assert (p - bound) ** 2 == pytest.approx(Z**2 * bound * (1 - bound) / n)
    assert (a.qualified_per_week.low, a.qualified_per_week.high) == pytest.approx(
        (a.share_qualified.low * 50, a.share_qualified.high * 50)
    )
    assert (a.precision.low, a.precision.high) == pytest.approx(wilson(6, 9))
    assert (a.recall.low, a.recall.high) == pytest.approx(wilson(6, 10))
    assert (a.expected_wins_per_week.low, a.expected_wins_per_week.high) == pytest.approx(
        tuple(b * 50 for b in wilson(6, 20))
    )
    assert (a.lift.low, a.lift.high) == pytest.approx(tuple(b / 0.25 for b in wilson(6, 9)))


def test_the_median_interval_uses_binomial_order_statistics() -> None:
    # m = 13: P(B <= 2) = 92/8192 <= 0.025 < P(B <= 3) = 378/8192, so r = 3: [x_(3), x_(11)].
    assert median_interval(np.arange(1, 14)) == (3.0, 11.0)
    # m = 6: P(B <= 0) = 1/64 <= 0.025, r = 1; m = 5: 1/32 > 0.025, no 95% interval: the range is given.
    assert median_interval(np.arange(1, 7)) == (1.0, 6.0)
    assert median_interval(np.array([5.0, 1.0, 3.0])) == (1.0, 5.0)


def test_duplicated_rows_of_the_same_leads_change_no_figure_and_no_interval() -> None:
    once = make_predictions()
    twice = pd.concat([once, once, once.iloc[::2]])
    a, b = make_tradeoff(once), make_tradeoff(twice)
    assert b.moments > a.moments
    for cutoff in (0.05, 0.3, 0.4, 0.41, 0.5, 0.62, 0.9):
        x, y = a.analyze(cutoff).to_dict(), b.analyze(cutoff).to_dict()
        del x["test_moments"], y["test_moments"]
        assert x == y
    assert a.cutoff_for_precision(0.6) == b.cutoff_for_precision(0.6)
    assert a.cutoff_for_recall(0.9) == b.cutoff_for_recall(0.9)
    assert a.cutoff_for_capacity(20) == b.cutoff_for_capacity(20)


def test_rows_counted_as_leads_would_give_other_figures() -> None:
    legacy = TradeOff.from_predictions(make_predictions().drop(columns="created_at"), LEADS_PER_WEEK)
    assert legacy.n == 35  # each row its own lead (models trained before scoring moments)
    assert make_tradeoff().n == 20


# ---- reverse queries, worked out by hand ---------------------------------------------------------------
# Lead maxima, highest first: .90 .80 .70 .65 .62 .60 .55 .52 | .50 .48 .45 .45 .41 .30 .25 ...
# At 50 leads a week each lead is 2.5 a week: 20 a week is 8 leads, reached at 0.52; 0.50 hands over 9 (22.5).
# Precision (won after hand-over / handed) at each record value, going down:
#   .90 0/1  .80 1/2  .70 2/3  .65 2/4  .62 3/5  .60 4/6  .55 4/7  .52 5/8  .50 6/9  .48 6/10  .45 8/12
#   .41 9/13  .40 8/13 (L05's hand-over moves to creation, where it was not won within 90 days)  .38 8/13
#   .35 8/13  .33 7/13  .30 7/14 ...
# So precision >= 0.6 is reached lowest at 0.35 (L01's second moment: no lead's maximum; a search over lead
# maxima alone would answer 0.41), >= 0.65 at 0.41, and 0.7 never: the best is 9/13 at 0.41.
# Caught wins: .45 -> 8 of 10, .41 -> 9 of 10, .25 -> 10 of 10.


def test_capacity_gives_the_lowest_cutoff_within_it() -> None:
    trade = make_tradeoff()
    assert trade.cutoff_for_capacity(20) == pytest.approx(0.52)
    assert trade.analyze(trade.cutoff_for_capacity(20)).qualified_per_week.value == pytest.approx(20)
    assert trade.cutoff_for_capacity(22.5) == pytest.approx(0.50)
    assert trade.analyze(trade.cutoff_for_capacity(1)).leads_handed_over == 0  # not even one lead fits


def test_precision_search_is_exact_where_a_hand_over_moves() -> None:
    trade = make_tradeoff()
    assert trade.cutoff_for_precision(0.6) == pytest.approx(0.35)
    assert trade.analyze(0.35).precision.value == pytest.approx(8 / 13)
    assert trade.analyze(0.33).precision.value == pytest.approx(7 / 13)  # L14 now handed at creation: not won
    assert trade.cutoff_for_precision(0.65) == pytest.approx(0.41)
    assert trade.cutoff_for_precision(0.25) == pytest.approx(0.02)  # everyone, at first moment: the base rate


def test_an_unreachable_precision_says_the_best_reachable() -> None:
    with pytest.raises(Unreachable) as err:
        make_tradeoff().cutoff_for_precision(0.7)
    assert err.value.best == pytest.approx(9 / 13)
    assert err.value.best_cutoff == pytest.approx(0.41)
    assert "0.6923" in str(err.value)


def test_recall_gives_the_highest_cutoff_reaching_it() -> None:
    trade = make_tradeoff()
    assert trade.cutoff_for_recall(0.9) == pytest.approx(0.41)
    assert trade.cutoff_for_recall(0.8) == pytest.approx(0.45)
    assert trade.cutoff_for_recall(1.0) == pytest.approx(0.25)
    no_wins = TradeOff.from_predictions(make_predictions().assign(label=0), LEADS_PER_WEEK)
    with pytest.raises(Unreachable) as err:
        no_wins.cutoff_for_recall(0.5)
    assert err.value.best == 0


def test_share_of_leads_maps_to_a_cutoff_and_back() -> None:
    trade = make_tradeoff()
    assert trade.share_at(0.5) == pytest.approx(0.45)
    assert trade.cutoff_for_share(0.45) == pytest.approx(0.50)
    assert trade.share_at(trade.cutoff_for_share(0.0)) == 0
    assert trade.share_at(trade.cutoff_for_share(1.0)) == 1


def test_default_grades_hand_over_ten_thirty_and_sixty_percent_of_leads() -> None:
    trade = make_tradeoff()
    cut = trade.default_cutoffs()
    assert [trade.share_at(cut[g]) for g in ("a", "b", "c", "qualified")] == pytest.approx([0.1, 0.3, 0.6, 0.3])
    assert cut["a"] > cut["b"] > cut["c"]


def test_the_table_has_every_figure_per_cutoff() -> None:
    table = make_tradeoff().table()
    assert table["cutoff"].is_monotonic_decreasing and table["cutoff"].is_unique
    assert table["cutoff"].iloc[-1] == pytest.approx(0.02)  # everyone handed over when first scored
    last = table.iloc[-1]
    assert last["share_qualified"] == 1 and last["lift"] == pytest.approx(1.0)
    for name in ("qualified_per_week", "precision", "recall", "median_days_to_hand_over"):
        assert {name, f"{name}_low", f"{name}_high"} <= set(table.columns)
    assert (table["recall"].diff().dropna() >= 0).all()


# ---- the sweep against a brute-force replay, on random windows ----------------------------------------------


def brute_force(predictions: pd.DataFrame, cutoff: float) -> tuple[int, int, int, float | None]:
    """(handed, won after hand-over, caught, median days), one lead at a time, the slow obvious way."""
    handed = won = caught = 0
    days = []
    for _, moments in predictions.sort_values(["as_of", "probability"], ascending=[True, False]).groupby("lead_id"):
        reached = moments[moments.probability >= cutoff]
        if len(reached):
            first = reached.iloc[0]
            handed += 1
            won += int(first.label)
            caught += int(moments.label.max())
            days.append((first.as_of - moments.created_at.min()) / pd.Timedelta(days=1))
    return handed, won, caught, float(np.median(days)) if days else None


def random_window(seed: int, leads: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(leads):
        created = START + pd.Timedelta(hours=int(rng.integers(0, 2000)))
        for _ in range(int(rng.integers(1, 6))):
            rows.append(
                {
                    "lead_id": f"x{i}",
                    "as_of": created + pd.Timedelta(days=int(rng.integers(0, 60))),
                    "created_at": created,
                    "probability": round(float(rng.random()), 1),  # ties on purpose
                    "label": int(rng.random() < 0.3),
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(5))
def test_the_sweep_matches_a_brute_force_replay_at_every_cutoff(seed: int) -> None:
    predictions = random_window(seed)
    trade = TradeOff.from_predictions(predictions, 10.0)
    for cutoff in [*trade.candidate_cutoffs(), 0.05, 0.55, 1.0]:
        a = trade.analyze(float(cutoff))
        handed, won, caught, median = brute_force(predictions, float(cutoff))
        assert (a.leads_handed_over, a.wins_after_hand_over, a.wins_caught) == (handed, won, caught)
        if median is None:
            assert a.median_days_to_hand_over is None
        else:
            assert a.median_days_to_hand_over is not None
            assert a.median_days_to_hand_over.value == pytest.approx(median)
    # The precision search is exact: nothing lower reaches the target, and the answer does.
    target = 0.35
    try:
        chosen = trade.cutoff_for_precision(target)
    except Unreachable as err:
        assert all(trade.analyze(float(c)).precision.value < target for c in trade.candidate_cutoffs())
        assert err.best == max(trade.analyze(float(c)).precision.value for c in trade.candidate_cutoffs())
    else:
        assert trade.analyze(chosen).precision.value >= target
        assert all(trade.analyze(float(c)).precision.value < target for c in trade.candidate_cutoffs() if c < chosen)


# ---- the route: an unreachable target is a 422 naming the field, not a 500 ------------------------------------


def analysis_client() -> Any:
    """The real threshold router and error handlers over the 20-lead window (caller and model injected)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from serving.deps import get_principal, get_serving
    from serving.errors import install_error_handlers
    from serving.store import Principal
    from serving.threshold_routes import router

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    trade = make_tradeoff()
    app.state.tradeoff = lambda version: trade
    app.dependency_overrides[get_principal] = lambda: Principal(1, "tester", "sales", "tester@example.com")
    app.dependency_overrides[get_serving] = lambda: SimpleNamespace(loaded=SimpleNamespace(version="7"))
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_the_analysis_route_answers_in_leads_and_an_unreachable_precision_is_a_422() -> None:
    with analysis_client() as client:
        ok = client.get("/v1/threshold/analysis", params={"min_precision": 0.6})
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["cutoff"] == pytest.approx(0.35) and body["leads_handed_over"] == 13
        # At 0.35, as at 0.4 but L01 is handed over on day 7 and L17 on day 0: six 0s, 3 7 21 28 30 40 60.
        assert body["median_days_to_hand_over"]["value"] == pytest.approx(3.0) and body["model_version"] == "7"
        capacity = client.get("/v1/threshold/analysis", params={"leads_per_week": 20}).json()
        assert capacity["cutoff"] == pytest.approx(0.52) and capacity["qualified_per_week"]["value"] == 20
        bad = client.get("/v1/threshold/analysis", params={"min_precision": 0.7})
        assert bad.status_code == 422, bad.text
        (item,) = bad.json()["detail"]
        assert item["loc"] == ["query", "min_precision"] and item["type"] == "TargetUnreachable"
        assert item["ctx"]["best_reachable"] == pytest.approx(9 / 13) and item["ctx"]["cutoff"] == pytest.approx(0.41)
        assert "0.6923" in item["msg"]
        nobody = client.get("/v1/threshold/analysis", params={"cutoff": 0.95}).json()
        assert nobody["leads_handed_over"] == 0 and nobody["median_days_to_hand_over"] is None
        curve = client.get("/v1/threshold/curve").json()["points"]
        assert curve[-1]["share_qualified"]["value"] == 1


def test_the_cli_prints_figures_with_units_and_exits_2_when_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import leadscore.cli as cli

    class Context:  # the champion's trade-off is the 20-lead window
        champion = SimpleNamespace(version="7")

        def tradeoff(self, version: str) -> TradeOff:
            return make_tradeoff()

    monkeypatch.setattr(cli, "_ThresholdContext", Context)
    runner = CliRunner()
    ok = runner.invoke(cli.app, ["threshold", "analyze", "--min-recall", "0.9"])
    assert ok.exit_code == 0, ok.output
    assert "cut-off 0.4100" in ok.stdout and "leads handed over per week" in ok.stdout
    assert (
        "32.5   95% [" in ok.stdout and "median days to hand-over" in ok.stdout and "14.0 days" in ok.stdout
    )  # at 0.41: L05 on day 20, L17 on day 10
    bad = runner.invoke(cli.app, ["threshold", "analyze", "--min-precision", "0.7"])
    assert bad.exit_code == 2 and "best reachable precision is 0.6923" in " ".join(bad.output.split())
