"""Training end to end: registry, alias, pyfunc, batch scoring, baselines, calibration, reproducibility."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features import build_features
from models.registry import configure_tracking
from tests.conftest import TrainedWorld, leadscore_in_process, make_config
from training.data import FlatExportOptions, load_crm_data
from training.demo_data import write_demo_data
from training.moments import MomentConfig, scoring_moments
from training.pipeline import NotEnoughData, TrainConfig, make_examples, split_examples, train

REAL_EXPORT = Path(__file__).resolve().parents[3] / "shared" / "data" / "xeducation" / "Leads.csv"
REQUIRED_METRICS = ("test_roc_auc", "test_pr_auc", "test_brier", "test_log_loss", "test_ece", "test_lift_at_10pct")


def test_run_is_tracked_with_exact_metric_names_and_artifacts(trained: TrainedWorld) -> None:
    configure_tracking(trained.config.tracking_uri or "")
    run = MlflowClient().get_run(trained.result.run_id)
    for name in REQUIRED_METRICS:
        for prefix in ("", "baseline_logreg_", "baseline_rules_"):
            assert f"{prefix}{name}" in run.data.metrics
    assert run.data.params["data_sha256"] == run.data.tags["data_sha256"]
    assert int(run.data.params["data_wins"]) > 0
    artifacts = {a.path for a in MlflowClient().list_artifacts(trained.result.run_id)}
    assert {
        "threshold_table.csv",
        "test_predictions.parquet",
        "feature_importance.csv",
        "segment_auc_by_lead_source.csv",
        "data_fingerprint.json",
        "plots",
    } <= artifacts
    plots = {a.path for a in MlflowClient().list_artifacts(trained.result.run_id, "plots")}
    assert plots == {f"plots/{n}.png" for n in ("roc", "precision_recall", "calibration", "cumulative_gains")}


def beats_the_creation_time_logistic_regression(
    metrics: dict[str, float], first_score_within_interval: bool = False, noise: tuple[float, float] = (0.0, 0.0)
) -> None:
    """The model's ROC AUC is above, and its log loss below, the creation-time logistic regression's, over all
    moments and at first score; ``noise`` = (AUC, log loss) allowances where the data hold no more signal
    than the regression can use. With ``first_score_within_interval``, at first score the model need only
    not be known to be worse: the 95% intervals of its paired differences (DeLong for AUC, one row per lead)
    reach the better side of 0."""
    for scope in ("test_", "test_first_score_"):
        if scope == "test_first_score_" and first_score_within_interval:
            assert metrics["test_first_score_roc_auc_difference_vs_creation_logreg_high"] > 0, scope
            assert metrics["test_first_score_log_loss_difference_vs_creation_logreg_low"] < 0, scope
            continue
        assert metrics[f"{scope}roc_auc"] > metrics[f"baseline_creation_logreg_{scope}roc_auc"] - noise[0], scope
        assert metrics[f"{scope}log_loss"] < metrics[f"baseline_creation_logreg_{scope}log_loss"] + noise[1], scope


def test_model_beats_the_creation_time_and_logistic_baselines_and_is_calibrated(trained: TrainedWorld) -> None:
    m = trained.result.metrics
    # At first score the 10k-lead fixture's test window has about 60 wins: an AUC is known to about +-0.03
    # there, and the two tie within the interval the run reports. On 100k demo leads they still tie (0.780
    # against 0.786, DeLong interval about +-0.01): the demo's signal at creation is nearly additive in the
    # attributes, the regression's own form.
    beats_the_creation_time_logistic_regression(m, first_score_within_interval=True)
    half_width = (
        m["test_first_score_roc_auc_difference_vs_creation_logreg_high"]
        - m["test_first_score_roc_auc_difference_vs_creation_logreg"]
    )
    assert 0.005 < half_width < 0.1  # about 60 wins: an AUC known to a few hundredths, not exactly
    assert m["test_log_loss"] < m["baseline_logreg_test_log_loss"]
    assert m["test_calibration_passes"] == 1.0
    assert 0.8 <= m["test_calibration_slope"] <= 1.25


def test_probabilities_are_calibrated_per_scoring_moment_not_per_lead_weight(trained: TrainedWorld) -> None:
    """A served probability is a promise about the moment it is served at. Isotonic and (unpenalised)
    sigmoid calibration both give back, on the window they are fitted on, the mean label of what they are
    fitted with: fitted per moment, the calibration window's mean probability is its share of moments won.
    Fitted with the fit's per-lead weights (1 / moments of the lead, which fall as a lead's later activity,
    and so its chance to win, rises), it would be the weighted share, far below, and every moment would be
    promised too little."""
    data = load_crm_data(trained.data_dir)
    examples = make_examples(data, trained.config)
    split = split_examples(examples, data, trained.config, [])
    rows = examples.iloc[split.calibration]
    model = trained.result.model
    features = build_features(rows[list(data.leads.columns)], data.touchpoints, rows["as_of"], model.spec)
    p = model.predict_proba(features.to_numpy(dtype=np.float64))
    won = rows["label"].to_numpy(dtype=np.float64)
    per_lead = np.average(won, weights=split.weight[split.calibration])
    assert per_lead < won.mean() - 0.02  # the weighted share differs: the choice matters on this data
    assert p.mean() == pytest.approx(won.mean(), abs=0.002)
    # and at creation of moment on the test window, within the noise of its leads
    test_rows = examples.iloc[split.test]
    test_features = build_features(
        test_rows[list(data.leads.columns)], data.touchpoints, test_rows["as_of"], model.spec
    )
    p_test = model.predict_proba(test_features.to_numpy(dtype=np.float64))
    won_test = test_rows["label"].to_numpy(dtype=np.float64)
    first = test_rows["moment"].astype(str).to_numpy() == "creation"
    noise = 3 * np.sqrt(np.sum(p_test[first] * (1 - p_test[first]))) / first.sum()
    assert abs(p_test[first].mean() - won_test[first].mean()) < noise


def test_model_beats_the_creation_time_baseline_on_attribute_only_data(trained: TrainedWorld, tmp_path: Path) -> None:
    """Leads and outcomes without a touch log: attributes are the only signal."""
    attributes_only = tmp_path / "attributes-only"
    attributes_only.mkdir()
    for name in ("leads.parquet", "outcomes.parquet"):
        shutil.copy(trained.data_dir / name, attributes_only / name)
    result = train(make_config(tmp_path, attributes_only))
    assert not result.model.spec.use_touches
    # Attributes are all the regression has too: the two tie within the noise of ~60 test wins. Measured on
    # 10k demo leads (all moments, AUC): seed 5 (this fixture) 0.735 against 0.739, seed 7 0.702 against
    # 0.690, seed 42 0.709 against 0.689. Issue 12's closing note lists this as not met.
    beats_the_creation_time_logistic_regression(result.metrics, noise=(0.01, 0.002))


def test_model_beats_the_creation_time_baseline_on_a_flat_export_with_a_time_column(
    trained: TrainedWorld, tmp_path: Path
) -> None:
    """One row per lead with creation and close dates: one scoring moment per lead, attributes only. Model
    selection may serve a logistic regression here; whichever it keeps is recorded with the model."""
    leads = pd.read_parquet(trained.data_dir / "leads.parquet")
    outcomes = pd.read_parquet(trained.data_dir / "outcomes.parquet")
    flat = leads.merge(outcomes[["lead_id", "outcome", "closed_at"]], on="lead_id", how="left")
    flat["converted"] = (flat["outcome"] == "won").astype(int)
    flat["closed_at"] = flat["closed_at"].where(flat["outcome"] == "won")
    flat.drop(columns=["outcome"]).to_csv(tmp_path / "export.csv", index=False)
    options = FlatExportOptions(time_column="created_at", close_column="closed_at")
    result = train(make_config(tmp_path / "home", tmp_path / "export.csv", flat=options))
    beats_the_creation_time_logistic_regression(result.metrics)
    selection = result.model.meta["model_selection"]
    assert {t["kind"] for t in selection["tried"]} == {"lightgbm", "logistic_regression"}
    assert result.model.meta["margin_model"] == selection["chosen"]["kind"]


def test_model_beats_the_creation_time_baseline_on_the_real_flat_export(tmp_path: Path) -> None:
    """The real X Education export (one row per lead, no time), without the columns sales fills in."""
    flat = FlatExportOptions(id_column="Prospect ID", label_column="Converted")
    leaky = ("Tags", "Lead Quality", "Lead Profile")
    result = train(make_config(tmp_path, REAL_EXPORT, flat=flat, exclude_columns=leaky))
    assert result.split_kind == "stratified"
    beats_the_creation_time_logistic_regression(result.metrics)


def test_registered_version_carries_alias_tags_and_serves_through_pyfunc(trained: TrainedWorld) -> None:
    configure_tracking(trained.config.tracking_uri or "")
    client = MlflowClient()
    champion = client.get_model_version_by_alias("leadscore", "champion")
    assert str(champion.version) == trained.result.model_version
    assert champion.tags["data_sha256"] and float(champion.tags["test_roc_auc"]) == pytest.approx(
        trained.result.metrics["test_roc_auc"], abs=1e-6
    )
    pyfunc = mlflow.pyfunc.load_model("models:/leadscore@champion")
    data = load_crm_data(trained.data_dir)
    model = trained.result.model
    as_of = data.end_time - pd.Timedelta(days=10)
    frame = build_features(data.leads.iloc[:200], data.touchpoints, as_of, model.spec)
    served = np.asarray(pyfunc.predict(frame))
    np.testing.assert_allclose(served, model.predict_proba(frame.to_numpy(dtype=np.float64)))
    assert ((served > 0) & (served < 1)).all()


def test_leadscore_score_writes_every_open_lead(trained: TrainedWorld, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    as_of = "2026-05-01T00:00:00Z"
    args = ("score", "--data", str(trained.data_dir), "--out", str(out), "--as-of", as_of)
    proc = leadscore_in_process(trained.home, *args)
    assert proc.returncode == 0, proc.stderr
    scores = pd.read_csv(out)
    data = load_crm_data(trained.data_dir)
    ts = pd.Timestamp(as_of)
    closed = data.outcomes.loc[data.outcomes.closed_at <= ts, "lead_id"]
    expected = data.leads[(data.leads.created_at <= ts) & ~data.leads.lead_id.isin(closed)]
    assert sorted(scores.lead_id) == sorted(expected.lead_id)
    assert scores.probability.between(0, 1).all() and scores.score.between(0, 100).all()
    assert set(scores.grade) <= {"A", "B", "C", "D"}
    assert f"left out {len(closed):,} already closed" in proc.stderr.replace("\n", " ")
    # the same numbers as the model itself computes for those leads
    model = trained.result.model
    X = build_features(expected, data.touchpoints, ts, model.spec).to_numpy(dtype=np.float64)
    direct = pd.Series(model.predict_proba(X), index=expected.lead_id.to_numpy())
    np.testing.assert_allclose(scores.set_index("lead_id").probability.loc[direct.index], direct, rtol=1e-9)


def test_same_data_and_seed_give_the_same_model_and_another_seed_another(trained: TrainedWorld, tmp_path: Path) -> None:
    assert trained.config.seed == 42
    again = train(make_config(tmp_path / "again", trained.data_dir, seed=42))  # a second, independent run
    assert again.run_id != trained.result.run_id and again.model is not trained.result.model
    assert again.metrics == trained.result.metrics
    assert again.model.meta["model_selection"] == trained.result.model.meta["model_selection"]
    first, second = trained.result.model.booster, again.model.booster
    assert first is not None and second is not None  # model selection chose the trees both times
    assert second.model_to_string() == first.model_to_string()
    # The seed is used (early-stopping half, calibration folds, baselines): another seed, another model.
    other = train(make_config(tmp_path / "other", trained.data_dir, seed=7))
    assert other.metrics != trained.result.metrics


def test_promotion_keeps_a_better_champion_unless_forced(trained: TrainedWorld, tmp_path: Path) -> None:
    home = tmp_path
    # one candidate each (tune=False): the gate is what is tested, and a weak model must stay weak
    first = train(make_config(home, trained.data_dir, promote=True, tune=False))
    assert first.promoted and "no champion" in first.promotion_message
    weak = train(
        make_config(
            home, trained.data_dir, promote=True, tune=False, num_boost_round=1, early_stopping_rounds=1, num_leaves=2
        )
    )
    assert not weak.promoted and "kept champion version 1" in weak.promotion_message
    forced = train(
        make_config(home, trained.data_dir, promote=True, force=True, tune=False, num_boost_round=1, num_leaves=2)
    )
    assert forced.promoted and "--force" in forced.promotion_message
    configure_tracking(f"sqlite:///{home / 'mlflow.db'}")
    assert str(MlflowClient().get_model_version_by_alias("leadscore", "champion").version) == forced.model_version


def test_too_few_wins_refuses_with_exit_code_2(tmp_path: Path) -> None:
    data_dir = tmp_path / "tiny"
    write_demo_data(data_dir, n_leads=600, seed=1)
    with pytest.raises(NotEnoughData, match="at least 50"):
        train(make_config(tmp_path, data_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "leadscore", "train", "--data", str(data_dir)],
        capture_output=True,
        text=True,
        env={"LEADSCORE_HOME": str(tmp_path / "h"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 2 and "at least 50" in proc.stderr


def test_features_never_see_the_future_as_if_later_touches_were_deleted(trained: TrainedWorld) -> None:
    """The features of a scoring moment equal those built from a source where every later touch was deleted
    (400 moments drawn at random, each built against its own truncated touch log)."""
    data = load_crm_data(trained.data_dir)
    config = TrainConfig(data=trained.data_dir)
    examples = make_examples(data, config)
    spec = trained.result.model.spec
    lead_cols = list(data.leads.columns)
    sample = examples.sample(400, random_state=3)
    full = build_features(sample[lead_cols], data.touchpoints, sample["as_of"], spec)
    truncated = pd.concat(
        [
            build_features(group[lead_cols], data.touchpoints[data.touchpoints.occurred_at <= t], t, spec)
            for t, group in sample.groupby("as_of")
        ]
    ).loc[full.index]
    pd.testing.assert_frame_equal(full, truncated)
    assert (full.filter(like="n_touches_all").to_numpy() > 0).any()  # the sample does see touches


def test_moments_never_run_past_the_end_of_the_data(trained: TrainedWorld) -> None:
    data = load_crm_data(trained.data_dir)
    config = TrainConfig(data=trained.data_dir, horizon_days=90)
    examples = make_examples(data, config)
    assert examples["as_of"].max() + pd.Timedelta(days=90) <= data.end_time
    assert len(scoring_moments(data, MomentConfig(horizon_days=10_000))) == 0
    # a moment is of a lead still open at as_of
    closed = examples.merge(data.outcomes, on="lead_id", how="left")
    assert not (closed["closed_at"] <= closed["as_of"]).any()


def test_four_concurrent_downloads_leave_one_complete_copy_and_nothing_partial(
    trained: TrainedWorld, tmp_path: Path
) -> None:
    """Workers of one server download a new champion at once: each gets a whole model, the cache ends with
    one complete copy and no staging directory, and an interrupted older copy (no marker) is replaced."""
    from concurrent.futures import ThreadPoolExecutor

    from models.registry import COMPLETE, load_registered_model

    configure_tracking(trained.config.tracking_uri or "")
    version = trained.result.model_version
    cache = tmp_path / "cache"
    partial = cache / "leadscore" / version
    partial.mkdir(parents=True)
    (partial / "meta.json").write_text("{}")  # what a killed download used to leave: counted as complete
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: load_registered_model("leadscore", version, cache), range(4)))
    expected = trained.result.model.predict_proba(np.zeros((2, len(trained.result.model.spec.feature_names))))
    for one in loaded:
        np.testing.assert_array_equal(
            one.model.predict_proba(np.zeros((2, len(one.model.spec.feature_names)))), expected
        )
    assert sorted(p.name for p in (cache / "leadscore").iterdir()) == [version]
    assert (partial / COMPLETE).exists() and (partial / "booster.txt").exists()
