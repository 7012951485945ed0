"""Training: examples -> split -> LightGBM + calibration + baselines -> evaluation -> MLflow -> registry."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from features import build_features, infer_spec
from features.spec import FeatureInfo, FeatureSpec
from models.calibration import Calibrator
from models.drift import drift_reference
from models.linear import LinearMargin
from models.registry import NoChampionModel as _NoChampion
from models.registry import (
    configure_tracking,
    ensure_experiment,
    load_champion,
    log_scoring_model,
    set_alias,
    tag_version,
)
from models.scoring_model import ScoringModel
from models.threshold_analysis import TradeOff
from training.baselines import RulesBaseline, logistic_baseline
from training.data import (
    CRMData,
    FlatExportOptions,
    InputOptions,
    ValidationReport,
    load_crm_data,
    merge_outcomes,
)
from training.evaluate import (
    calibration_check,
    classification_metrics,
    paired_auc_difference,
    paired_log_loss_difference,
    save_plots,
    segment_auc,
)
from training.leakage import LeakageAudit, audit_leakage
from training.moments import MomentConfig, flat_moments, scoring_moments

Progress = Callable[[str], None]
# an example's column, when a window's moments were sampled by class (the Dask engine): 1 when its lead was won
# within the horizon of any of its moments in the window before sampling (read by the leakage audit)
LEAD_WON = "_lead_won"
POSITIVE_TOUCHES = (
    "demo_request",
    "demo",
    "proposal",
    "meeting",
    "pricing_page",
    "form_fill",
    "webinar",
    "event",
    "content_download",
    "call",
    "email_click",
)


class NotEnoughData(ValueError):
    """The training window has too few wins or non-wins to learn from.

    ``notes`` carries what the run had found by then (how files were read, rows dropped and why), so that
    the cause, say "1,005 outcomes dropped: unknown value 'Closed Won'", is shown before the refusal.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.notes: list[str] = []


@dataclass
class TrainConfig:
    """Everything a training run depends on (all of it is logged as MLflow params)."""

    data: Path
    flat: FlatExportOptions | None = None
    strict: bool = False
    exclude_columns: tuple[str, ...] = ()
    data_end: str | None = None
    inputs: InputOptions = field(default_factory=InputOptions)
    horizon_days: int = 90
    experiment: str = "leadscore"
    model_name: str = "leadscore"
    promote: bool = False
    force: bool = False
    seed: int = 42
    moment_at_creation: bool = True
    moment_after_activity: bool = True
    moment_every_days: int = 30
    max_lead_age_days: int = 180
    half_life_days: float = 14.0
    test_fraction: float = 0.2
    test_follow_up_days: int = 60
    calibration_fraction: float = 0.2
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 100
    max_bin: int = 63
    num_boost_round: int = 1000
    early_stopping_rounds: int = 50
    tune: bool = True
    min_class_count: int = 50
    max_baseline_rows: int = 250_000
    leads_per_week: float | None = None
    num_threads: int = 0
    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_location: str | None = None
    cache_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "leadscore-model-cache")
    extra_outcomes: Path | None = None  # outcomes received through the API (``leadscore retrain``), merged in


@dataclass
class Split:
    """Which examples fit, calibrate and test the model, and how the split was made.

    ``weight`` holds each example's weight: ``1 / (examples of its lead in its window)``, so that every lead
    weighs one however often it is scored (see :mod:`training.moments`).
    """

    kind: str  # "time" or "stratified"
    train: np.ndarray
    calibration: np.ndarray
    test: np.ndarray
    windows: dict[str, str]
    weight: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class DataSource:
    """What fitting, evaluating and registering need of the data besides the example rows, whichever engine
    read it: the local engine takes it from its :class:`CRMData` (:func:`local_source`), the Dask engine sums
    it over partitions (training/dask_training.py)."""

    has_time: bool
    flat: FlatExportOptions | None
    excluded_columns: tuple[str, ...]
    report: ValidationReport
    lead_columns: list[str]
    fingerprint: dict[str, object]
    end_time: pd.Timestamp | None
    n_leads: int
    # new leads in each of the INFLOW_WEEKS weeks before the end of the data (index: whole weeks back)
    weekly_new_leads: np.ndarray | None
    # the test window's examples' features under another spec (the champion's, for the promotion gate)
    test_features: Callable[[FeatureSpec], np.ndarray]
    engine: dict[str, object] = field(default_factory=lambda: {"engine": "local"})


@dataclass
class Prepared:
    """The labelled examples, their split and features: what the fit starts from."""

    examples: pd.DataFrame  # one row per scoring moment: lead columns, as_of, moment, label, won_at
    split: Split
    spec: FeatureSpec
    X_all: np.ndarray  # float32, one row per example, spec order
    source: DataSource


@dataclass
class TrainResult:
    run_id: str
    model_version: str
    metrics: dict[str, float]
    promoted: bool
    promotion_message: str
    split_kind: str
    notes: list[str]
    model: ScoringModel
    leakage_suspects: list[str] = field(default_factory=list)
    exclude_line: str = ""

    def metric_table(self) -> list[tuple[str, ...]]:
        """Rows of (metric, then one value per model in :data:`MODELS` order), over all scoring moments
        (each moment once) and then at each test lead's first score (each lead once)."""
        m = self.metrics
        rows: list[tuple[str, ...]] = []
        for scope, label in (("test_", "all moments"), ("test_first_score_", "first score")):
            for name in METRIC_ROWS:
                values = [m.get(f"{prefix}{scope}{name}", float("nan")) for prefix in MODELS]
                rows.append((f"{name} ({label})", *(f"{v:.4f}" for v in values)))
        return rows


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------
def moment_config(config: TrainConfig) -> MomentConfig:
    return MomentConfig(
        horizon_days=config.horizon_days,
        at_creation=config.moment_at_creation,
        after_activity=config.moment_after_activity,
        every_days=config.moment_every_days,
        max_lead_age_days=config.max_lead_age_days,
    )


def make_examples(data: CRMData, config: TrainConfig, notes: list[str] | None = None) -> pd.DataFrame:
    """Labelled scoring moments (touch data), or one example per lead at creation (flat export)."""
    notes = [] if notes is None else notes
    if data.flat is not None or (data.touchpoints is None and not data.has_time):
        return flat_moments(data, config.horizon_days, notes)
    return scoring_moments(data, moment_config(config))


def lead_weights(lead_ids: pd.Series | np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``1 / (rows of the same lead among rows)`` for each of ``rows``: every lead weighs one."""
    ids = pd.Series(np.asarray(lead_ids)[rows])
    return (1.0 / ids.map(ids.value_counts())).to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class TimeWindows:
    """The boundaries of the purged time split (see :func:`split_examples`): from two figures of the whole
    data (the first creation time among the examples, and the end of the data), so that each partition of
    a larger dataset can assign its own rows (:meth:`masks`)."""

    first: pd.Timestamp
    end: pd.Timestamp
    horizon: pd.Timedelta
    follow_days: int
    b1: pd.Timestamp
    b2: pd.Timestamp
    test_last: pd.Timestamp

    def masks(self, examples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boolean masks of the rows (``created_at``, ``as_of``) in the train, calibration and test windows."""
        created, as_of = examples["created_at"], examples["as_of"]
        follow = pd.Timedelta(days=self.follow_days)
        b1, b2, h = self.b1, self.b2, self.horizon
        train = ((created < b1) & (as_of <= b1 - h)).to_numpy(dtype=bool)
        cal = ((created >= b1) & (created < b2) & (as_of <= b2 - h)).to_numpy(dtype=bool)
        test = ((created >= b2) & (created <= self.test_last) & (as_of <= created + follow)).to_numpy(dtype=bool)
        return train, cal, test

    def windows(self, horizon_days: int) -> dict[str, str]:
        b1, b2, h = self.b1, self.b2, self.horizon
        return {
            "train_leads_created": f"{self.first.date()} .. {(b1 - h).date()}",
            "train_moments_until": str((b1 - h).date()),
            "gap_after_train": f"{(b1 - h).date()} .. {b1.date()} ({horizon_days} days)",
            "calibration_leads_created": f"{b1.date()} .. {(b2 - h).date()}",
            "calibration_moments_until": str((b2 - h).date()),
            "gap_after_calibration": f"{(b2 - h).date()} .. {b2.date()} ({horizon_days} days)",
            "test_leads_created": f"{b2.date()} .. {self.test_last.date()}",
            "test_follow_up_days": str(self.follow_days),
            "test_moments_until": str((self.end - h).date()),
            "data_end": self.end.isoformat(),
        }


def time_windows(first: pd.Timestamp, end: pd.Timestamp, config: TrainConfig, only_creation: bool) -> TimeWindows:
    """The boundaries of the purged time split of :func:`split_examples`.

    Args:
        first: the earliest ``created_at`` among the examples.
        end: the end of the data.
        config: horizon, lead-age limit, test follow-up, calibration and test fractions.
        only_creation: every example is a creation moment (a flat export): no follow-up.

    Raises:
        NotEnoughData: data too short for two gaps of one horizon and the follow-up.
    """
    horizon = pd.Timedelta(days=config.horizon_days)
    follow_days = 0 if only_creation else min(config.test_follow_up_days, config.max_lead_age_days)
    follow = pd.Timedelta(days=follow_days)
    span = (end - horizon - first) - 2 * horizon - follow
    if span <= pd.Timedelta(days=3):
        raise NotEnoughData(
            f"the data runs from {first.date()} to {end.date()}: a time split purged by the horizon needs more "
            f"than three horizons ({3 * config.horizon_days} days) plus the test follow-up ({follow_days} days) "
            "of leads, plus the windows themselves; shorten --horizon-days or add data"
        )
    test_span = span * config.test_fraction
    cal_span = span * config.calibration_fraction
    test_last = end - horizon - follow
    b2 = (test_last - test_span).floor("D")
    b1 = (b2 - horizon - cal_span).floor("D")
    return TimeWindows(first, end, horizon, follow_days, b1, b2, test_last)


def split_examples(examples: pd.DataFrame, data: CRMData, config: TrainConfig, notes: list[str]) -> Split:
    """A purged, lead-grouped time split, or (no time information) a stratified split of leads.

    Each lead belongs to the window in which it was created; a window's examples are its leads' moments
    whose label is observed before the next window starts. With ``E`` the end of the data, ``H`` the horizon,
    ``F`` the test follow-up (``test_follow_up_days``, at most the lead-age limit) and boundaries ``B1 < B2``
    on the creation time:

    * train: leads created before ``B1``, moments with ``as_of <= B1 - H``;
    * calibration: leads created in ``[B1, B2)``, moments with ``as_of <= B2 - H``;
    * test: leads created in ``[B2, E - H - F]``, each followed for the same ``F`` days: moments with
      ``as_of <= created + F`` (so ``<= E - H``). Every test lead is replayed over the same span of its life,
      so a lead created late in the window is not cut short: the trade-off's figures are "within the
      first F days of a lead", the same for every lead.

    So no label used for fitting is observed after the calibration window starts, none used for
    calibration after the test window starts (a gap of one horizon each), and no lead is in two windows.
    The creation span left after the two gaps and the follow-up, ``E - H - first lead - 2H - F``, is shared
    by the windows in the proportions ``1 - c - t : c : t`` (``c``, ``t``: the calibration and test
    fractions).

    Raises:
        NotEnoughData: no examples, or data too short for two gaps of one horizon and the follow-up.
    """
    n = len(examples)
    if n == 0:
        raise NotEnoughData(
            "no training examples: no lead has a scoring moment whose horizon ends before the end of the data "
            f"({data.end_time.date() if data.has_time else 'no time column'}); add data, check --data-end, or "
            "shorten --horizon-days"
        )
    if not data.has_time:
        notes.append(
            "no usable time information: stratified random split of leads (train/calibration/test), not out-of-time"
        )
        idx = np.arange(n)
        y = examples["label"].to_numpy()
        rest, test = train_test_split(idx, test_size=config.test_fraction, stratify=y, random_state=config.seed)
        cal_share = config.calibration_fraction / (1 - config.test_fraction)
        train, cal = train_test_split(rest, test_size=cal_share, stratify=y[rest], random_state=config.seed)
        parts = (np.sort(train), np.sort(cal), np.sort(test))
        return Split("stratified", *parts, windows={}, weight=_weights(examples, parts))
    only_creation = bool((examples["moment"] == "creation").all())
    bounds = time_windows(examples["created_at"].min(), data.end_time, config, only_creation)
    horizon, follow_days, b1, b2 = bounds.horizon, bounds.follow_days, bounds.b1, bounds.b2
    created = examples["created_at"]
    train_mask, cal_mask, test_mask = bounds.masks(examples)
    parts = (np.flatnonzero(train_mask), np.flatnonzero(cal_mask), np.flatnonzero(test_mask))
    windows = bounds.windows(config.horizon_days)
    in_gap = ((created >= b1 - horizon) & (created < b1)) | ((created >= b2 - horizon) & (created < b2))
    gap_leads = examples.loc[in_gap, "lead_id"].nunique()
    notes.append(
        f"purged time split: train leads created {windows['train_leads_created']}, calibration "
        f"{windows['calibration_leads_created']}, test {windows['test_leads_created']} (each test lead followed "
        f"for its first {follow_days} days); gaps of one horizon between the windows ({gap_leads:,} leads created "
        "inside the gaps are in no window)"
    )
    return Split("time", *parts, windows=windows, weight=_weights(examples, parts))


def _weights(examples: pd.DataFrame, parts: tuple[np.ndarray, ...]) -> np.ndarray:
    weight = np.zeros(len(examples))
    for rows in parts:
        weight[rows] = lead_weights(examples["lead_id"], rows)
    return weight


def check_enough(lead_ids: pd.Series, y: np.ndarray, minimum: int) -> None:
    """At least ``minimum`` leads with a win and as many without, among the training window's leads."""
    won = pd.Series(y).groupby(np.asarray(lead_ids)).max()
    wins, losses = int(won.sum()), int(len(won) - won.sum())
    if wins < minimum or losses < minimum:
        raise NotEnoughData(
            f"the training window has {wins} leads won within the horizon and {losses} without; at least "
            f"{minimum} of each are needed (add data, lengthen the data range, or shorten --horizon-days)"
        )


def monotone_constraints(infos: list[FeatureInfo]) -> list[int]:
    """Engagement that signals buying intent never lowers the probability; recency never raises it."""
    out = []
    for info in infos:
        if (info.kind == "count" and info.touch_type in POSITIVE_TOUCHES) or info.kind in (
            "total",
            "channel_count",
            "decayed",
            "velocity",
            "distinct",
        ):
            out.append(1)
        elif info.kind == "flag" or info.name == "days_since_last_touch":
            out.append(-1)
        else:
            out.append(0)
    return out


def lightgbm_params(config: TrainConfig, spec: FeatureSpec) -> dict[str, Any]:
    return {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "max_bin": config.max_bin,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "cat_smooth": 10,
        # One-vs-rest splits for categories with up to 32 values: LightGBM's many-vs-many splits over
        # gradient-sorted categories overfit small windows (measured: +0.01 to +0.03 test ROC AUC on demo data,
        # neutral on the real export).
        "max_cat_to_onehot": 32,
        "monotone_constraints": monotone_constraints(spec.feature_infos()),
        "monotone_constraints_method": "basic",
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbosity": -1,
    }


@dataclass(frozen=True)
class Candidate:
    """One model setting tried by model selection: LightGBM (leaves, minimum leaf size, learning rate) or a
    regularised logistic regression (``C``, the inverse L2 penalty; the LightGBM fields are then 0)."""

    kind: str  # "lightgbm" | "logistic_regression"
    num_leaves: int = 0
    min_data_in_leaf: int = 0
    learning_rate: float = 0.0
    C: float = 0.0


LOGISTIC_C = (0.05, 0.5)


def candidates(config: TrainConfig) -> list[Candidate]:
    """The configured LightGBM setting first, then two simpler ones: 4 leaves, and 2 (stumps: an additive
    model, which is what small attribute-only data supports), then logistic regressions with a strong and a
    mild L2 penalty. A small, fixed budget, chosen on the calibration window; ``--no-tune`` keeps the first."""
    given = Candidate("lightgbm", config.num_leaves, config.min_data_in_leaf, config.learning_rate)
    if not config.tune:
        return [given]
    boosters = [given, Candidate("lightgbm", 4, 50, 0.05), Candidate("lightgbm", 2, 50, 0.05)]
    return list(dict.fromkeys(boosters)) + [Candidate("logistic_regression", C=c) for c in LOGISTIC_C]


def fit_booster(
    X: np.ndarray,
    y: np.ndarray,
    X_cal: np.ndarray,
    y_cal: np.ndarray,
    spec: FeatureSpec,
    config: TrainConfig,
    weight: np.ndarray | None = None,
    weight_cal: np.ndarray | None = None,
    candidate: Candidate | None = None,
) -> lgb.Booster:
    """LightGBM with native categorical handling, early-stopped on the calibration window (weighted)."""
    names = spec.feature_names
    cats = [names.index(c) for c in spec.categorical_feature_names]
    params = lightgbm_params(config, spec)
    if candidate is not None:
        params.update(
            num_leaves=candidate.num_leaves,
            min_data_in_leaf=min(candidate.min_data_in_leaf, max(5, len(y) // 20)),
            learning_rate=candidate.learning_rate,
        )
    train_set = lgb.Dataset(X, y, weight=weight, feature_name=names, categorical_feature=cats, free_raw_data=True)
    valid_set = lgb.Dataset(X_cal, y_cal, weight=weight_cal, reference=train_set)
    return lgb.train(
        params,
        train_set,
        num_boost_round=config.num_boost_round,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )


def select_model(
    X: np.ndarray,
    y: np.ndarray,
    X_cal: np.ndarray,
    y_cal: np.ndarray,
    spec: FeatureSpec,
    config: TrainConfig,
    weight: np.ndarray,
    weight_cal: np.ndarray,
    stopping: np.ndarray | None = None,
) -> tuple[lgb.Booster | None, LinearMargin | None, dict[str, Any]]:
    """Fit each candidate; keep the one with the lowest log loss per scoring moment on the calibration window
    (every moment once, as the calibrator, the calibration check and the test metrics count them; the fits and
    their early stopping keep the per-lead weights; the test window is never looked at). Returns the booster or
    the linear model (the other is None) and what was tried, for the model's record. With one candidate
    (``--no-tune``) the booster is fitted once, early-stopped on the whole window, with nothing cross-fitted
    (there is nothing to compare).

    ``stopping`` (a mask over the calibration rows, whole leads; see :func:`stopping_half`) splits the window
    in two halves for the boosters: each is early-stopped on one half and predicts the other (two-fold
    cross-fitting), so that every candidate is compared on predictions for moments it never saw, and early
    stopping does not favour the boosters. A chosen booster is then fitted again, early-stopped on the whole
    window. Without ``stopping`` (or when a half has one class) each booster is early-stopped on the whole
    window and compared there.
    """
    from sklearn.metrics import log_loss

    only = candidates(config)
    if len(only) == 1 and only[0].kind == "lightgbm":  # --no-tune: nothing to choose, so nothing to compare
        chosen_alone = {
            "chosen": asdict(only[0]),
            "tried": [asdict(only[0])],
            "chosen_by": "the only candidate (--no-tune)",
        }
        return fit_booster(X, y, X_cal, y_cal, spec, config, weight, weight_cal, only[0]), None, chosen_alone
    folds = [np.ones(len(y_cal), dtype=bool)]
    if stopping is not None and all(len(np.unique(y_cal[m])) == 2 for m in (stopping, ~stopping)):
        folds = [stopping, ~stopping]
    categorical = [name in spec.categorical_feature_names for name in spec.feature_names]
    tried = []
    best: tuple[float, LinearMargin | None, Candidate] | None = None
    for candidate in candidates(config):
        linear = None
        p = np.zeros(len(y_cal))
        if candidate.kind == "lightgbm":
            iterations = []
            for fit_on in folds:
                fold_booster = fit_booster(
                    X, y, X_cal[fit_on], y_cal[fit_on], spec, config, weight, weight_cal[fit_on], candidate
                )
                predict_on = ~fit_on if len(folds) == 2 else fit_on
                p[predict_on] = np.asarray(fold_booster.predict(X_cal[predict_on]), dtype=np.float64)
                iterations.append(fold_booster.best_iteration)
            extra: dict[str, Any] = {"best_iteration": iterations}
        else:
            linear = LinearMargin(categorical, C=candidate.C, seed=config.seed).fit(X, y, weight)
            p = 1.0 / (1.0 + np.exp(-linear.margin(X_cal)))
            extra = {}
        loss = float(log_loss(y_cal, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))  # per moment: what is reported
        tried.append({**asdict(candidate), **extra, "calibration_log_loss": loss})
        if best is None or loss < best[0]:
            best = (loss, linear, candidate)
    assert best is not None
    _, linear, candidate = best
    booster: lgb.Booster | None = None
    if candidate.kind == "lightgbm":  # the chosen setting, early-stopped on the whole window
        booster = fit_booster(X, y, X_cal, y_cal, spec, config, weight, weight_cal, candidate)
    by = "log loss per scoring moment on the calibration window" + (
        " (boosters cross-fitted: early-stopped on one half of its leads, predicting the other)"
        if len(folds) == 2
        else ""
    )
    chosen = {"chosen": asdict(candidate), "tried": tried, "chosen_by": by}
    return booster, linear, chosen


def stopping_half(lead_ids: pd.Series | np.ndarray, seed: int) -> np.ndarray:
    """A mask choosing about half of the leads (all moments of a lead together), the same for the same ids
    and seed."""
    hashed = pd.util.hash_array(np.asarray(lead_ids).astype(str), hash_key=f"{seed:016d}"[-16:])
    return (hashed % 2 == 0).astype(bool)


def choose_calibrator(
    margin: np.ndarray,
    y: np.ndarray,
    seed: int,
    weight: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[Calibrator, dict[str, float]]:
    """Isotonic or sigmoid, whichever has the lower cross-validated log loss on the calibration window (two
    folds: stratified, or with ``groups`` (lead ids) the two halves of :func:`stopping_half`, every lead's
    moments in one fold, so that isotonic regression is not judged on moments of leads it was fitted on).

    The pipeline calibrates **per scoring moment**: every moment counts once (``weight`` None), because a
    served probability is a promise about the moment it is served at, P(won within the horizon | what is
    known then). The fit's weights, ``1 / moments of the lead in its window``, depend on the lead's activity
    after the moment (an active lead has more moments, and converts more), so a weighted rate at a given
    margin is below the per-moment rate, by an amount that depends on how long the window follows its leads
    (on 200,000 demo leads, creation moments won at 4.5-4.9% in all three windows per moment, while weighted
    rates were 2.6% in train, 3.1% in calibration and 1.9% in test). A calibrator fitted with those weights
    learns the calibration window's follow-up, not the probability, and failed the test window's check.
    """
    from sklearn.metrics import log_loss

    w = np.ones(len(y)) if weight is None else weight
    scores: dict[str, float] = {}
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    if groups is not None:  # two halves of the leads, by a keyed hash (as early stopping splits them): O(n)
        in_half = stopping_half(groups, seed + 1)
        half, other = np.flatnonzero(in_half), np.flatnonzero(~in_half)
        if all(len(np.unique(y[rows])) == 2 for rows in (half, other)):  # else (a handful of leads): by row
            splits = [(half, other), (other, half)]
    if not splits:
        splits = list(StratifiedKFold(n_splits=2, shuffle=True, random_state=seed).split(margin.reshape(-1, 1), y))
    for method in ("sigmoid", "isotonic"):
        losses = []
        for fit_idx, eval_idx in splits:
            cal = Calibrator(method).fit(margin[fit_idx], y[fit_idx], w[fit_idx])
            losses.append(
                log_loss(y[eval_idx], cal.predict(margin[eval_idx]), labels=[0, 1], sample_weight=w[eval_idx])
            )
        scores[method] = float(np.mean(losses))
    best = min(scores, key=lambda m: (scores[m], m))
    return Calibrator(best).fit(margin, y, w), scores


def baseline_rows(y: np.ndarray, max_rows: int, seed: int, notes: list[str]) -> np.ndarray:
    """At most ``max_rows`` training rows for the linear baselines (stratified, seeded); they saturate early."""
    if len(y) <= max_rows:
        return np.arange(len(y))
    keep, _ = train_test_split(np.arange(len(y)), train_size=max_rows, stratify=y, random_state=seed)
    notes.append(f"baselines fitted on a stratified sample of {max_rows:,} of {len(y):,} training rows")
    return np.sort(keep)


def first_moments(examples: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Of ``rows`` (positions in ``examples``, sorted by lead then time), the first of each lead."""
    ids = examples["lead_id"].to_numpy()[rows]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    return rows[first]


INFLOW_WEEKS = 12


def weekly_counts(created_at: pd.Series, end: pd.Timestamp) -> np.ndarray:
    """New leads in each of the ``INFLOW_WEEKS`` whole weeks before ``end`` (index 0: the last week)."""
    age_seconds = (end - created_at).dt.total_seconds().to_numpy()
    age_weeks = age_seconds / pd.Timedelta(weeks=1).total_seconds()
    recent = (age_weeks >= 0) & (age_weeks < INFLOW_WEEKS)
    return np.bincount(age_weeks[recent].astype(int), minlength=INFLOW_WEEKS)[:INFLOW_WEEKS]


def weekly_inflow(source: DataSource, config: TrainConfig, notes: list[str]) -> tuple[float, tuple[float, float], str]:
    """New leads per week over the last 12 weeks before the end of the data, with a 95% interval of that
    mean rate: a t interval over the 12 weekly counts (``mean +- t(0.975, 11) * sd / sqrt(12)``), which
    takes in the week-to-week spread as it is (no Poisson assumption). A figure given in the config is
    taken as exact; a flat export without time assumes it covers one year (and says so). The third value says
    where the figure comes from, in words.
    """
    from scipy.stats import t as student_t

    if config.leads_per_week:
        rate = float(config.leads_per_week)
        return rate, (rate, rate), "given at training"
    if not source.has_time or source.weekly_new_leads is None or source.end_time is None:
        notes.append("no time column: per-week figures assume the export covers one year")
        rate = source.n_leads / 52.0
        return rate, (rate, rate), "assumed: the export (no time column) covers one year"
    end = source.end_time
    counts = source.weekly_new_leads
    mean = float(counts.mean())
    half = float(student_t.ppf(0.975, INFLOW_WEEKS - 1) * counts.std(ddof=1) / np.sqrt(INFLOW_WEEKS))
    basis = f"counted: new leads per week over the {INFLOW_WEEKS} weeks before {end.date()}"
    return mean, (max(0.0, mean - half), mean + half), basis


METRIC_ROWS = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_at_10pct")
MODELS = {
    "": "leadscore",
    "baseline_creation_logreg_": "creation-time logistic",
    "baseline_logreg_": "logistic",
    "baseline_rules_": "rules",
}


def score_reference(p: np.ndarray, weight: np.ndarray | None = None) -> list[float]:
    """1,001 quantiles of the test-window probabilities, each scoring moment weighted (``1 / moments of its
    lead``) so that the 0-100 score is a percentile among test leads, not among rows."""
    q = np.linspace(0, 1, 1001)
    if weight is None:
        return np.quantile(p, q).round(8).tolist()
    return np.quantile(p, q, weights=weight, method="inverted_cdf").round(8).tolist()


# ---------------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------------
def train(config: TrainConfig, progress: Progress = lambda _: None) -> TrainResult:
    """Load, validate, split, fit, evaluate, log to MLflow and register; promote when asked and earned.

    Raises:
        DataValidationError: the data breaks the contract (unreadable file, missing column, a time column
            read both ways, or any bad row in strict mode).
        NotEnoughData: fewer than ``min_class_count`` won or not-won leads in the training window, or data
            too short for a purged time split; its ``notes`` hold the validation report.
    """
    notes: list[str] = []
    try:
        return _train(config, progress, notes)
    except NotEnoughData as err:
        err.notes = notes
        raise


def _train(config: TrainConfig, progress: Progress, notes: list[str]) -> TrainResult:
    started = time.perf_counter()
    prepared = _prepare_local(config, progress, notes)
    return fit_and_register(config, prepared, progress, notes, started)


def check_windows(lead_ids: pd.Series, y_all: np.ndarray, split: Split, config: TrainConfig, end: str) -> None:
    """Refuse a split the fit cannot use (``end``: how to name the end of the data in the message).

    Raises:
        NotEnoughData: too few won or not-won training leads, or an empty or one-class calibration or test
            window.
    """
    check_enough(lead_ids.iloc[split.train], y_all[split.train], config.min_class_count)
    for name, idx in (("calibration", split.calibration), ("test", split.test)):
        if len(idx) == 0:
            raise NotEnoughData(
                f"the {name} window has no scoring moment (windows: {split.windows}); take more kinds of moments "
                "(--moments), shorten --every-days or --horizon-days, or add data"
            )
        if len(np.unique(y_all[idx])) < 2:
            raise NotEnoughData(
                f"the {name} window has only one class (no lead won, or every lead won, within the horizon); "
                f"{end}add data, check --data-end, or shorten --horizon-days"
            )


def local_source(data: CRMData, examples: pd.DataFrame, split: Split) -> DataSource:
    """The :class:`DataSource` of data read by the local engine."""
    lead_cols = list(data.leads.columns)

    def test_features(spec: FeatureSpec) -> np.ndarray:
        rows = examples.iloc[split.test]
        return build_features(rows[lead_cols], data.touchpoints, rows["as_of"], spec).to_numpy(dtype=np.float32)

    return DataSource(
        has_time=data.has_time,
        flat=data.flat,
        excluded_columns=data.excluded_columns,
        report=data.report,
        lead_columns=lead_cols,
        fingerprint=data.fingerprint(),
        end_time=data.end_time if data.has_time else None,
        n_leads=len(data.leads),
        weekly_new_leads=weekly_counts(data.leads["created_at"], data.end_time) if data.has_time else None,
        test_features=test_features,
    )


def _prepare_local(config: TrainConfig, progress: Progress, notes: list[str]) -> Prepared:
    """Load and validate the data, take and split the examples, learn the spec and build the features."""
    progress("loading and validating data")
    data = load_crm_data(
        config.data,
        flat=config.flat,
        strict=config.strict,
        exclude_columns=config.exclude_columns,
        data_end=config.data_end,
        inputs=config.inputs,
    )
    notes += data.report.reading_lines() + data.report.notes + data.report.lines()
    if config.extra_outcomes is not None:
        data, merged = merge_outcomes(data, pd.read_parquet(config.extra_outcomes))
        notes += merged

    progress("taking scoring moments and labels")
    examples = make_examples(data, config, notes)
    split = split_examples(examples, data, config, notes)
    end = f"the end of the data is {data.end_time.isoformat()}; " if data.has_time else ""
    check_windows(examples["lead_id"], examples["label"].to_numpy(), split, config, end)

    progress("building point-in-time features")
    lead_cols = list(data.leads.columns)
    train_rows = examples.iloc[split.train]
    touches = data.touchpoints
    known_touches = None
    if touches is not None:
        known_touches = touches[touches["occurred_at"] <= train_rows["as_of"].max()]
    spec = infer_spec(
        train_rows[lead_cols].drop_duplicates("lead_id"),
        known_touches,
        exclude_columns=data.excluded_columns,
        half_life_days=config.half_life_days,
    )
    features = build_features(examples[lead_cols], touches, examples["as_of"], spec)
    X_all = features.to_numpy(dtype=np.float32)
    del features
    return Prepared(examples, split, spec, X_all, local_source(data, examples, split))


def window_rows(X_all: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``X_all[rows]``: a view when ``rows`` are consecutive positions in order (as the Dask engine lays its
    windows out; read-only, so that nothing fitted on it can change ``X_all``), else a copy."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and bool(np.all(np.diff(rows) == 1)):
        view = X_all[int(rows[0]) : int(rows[-1]) + 1]
        view.flags.writeable = False
        return view
    return X_all[rows]


def fit_and_register(
    config: TrainConfig, prepared: Prepared, progress: Progress, notes: list[str], started: float
) -> TrainResult:
    """Fit, calibrate, compare with the baselines, evaluate, audit, log to MLflow and register (either engine)."""
    examples, split, spec, X_all, source = (
        prepared.examples,
        prepared.split,
        prepared.spec,
        prepared.X_all,
        prepared.source,
    )
    y_all, w_all = examples["label"].to_numpy(), split.weight
    train_rows = examples.iloc[split.train]
    tr, ca, te = split.train, split.calibration, split.test
    X, y, w = window_rows(X_all, tr), y_all[tr], w_all[tr]
    X_cal, y_cal, w_cal = window_rows(X_all, ca), y_all[ca], w_all[ca]
    X_test, y_test, w_test = window_rows(X_all, te), y_all[te], w_all[te]

    progress(f"fitting the candidate models on {len(y):,} scoring moments of {len(set(train_rows['lead_id'])):,} leads")
    stopping = stopping_half(examples["lead_id"].to_numpy()[ca], config.seed)
    booster, linear, selection = select_model(X, y, X_cal, y_cal, spec, config, w, w_cal, stopping)
    model = ScoringModel(spec=spec, booster=booster, calibrator=Calibrator(), linear=linear)
    margin_cal = model.margin(X_cal)
    calibrator, cal_scores = choose_calibrator(  # per moment: see its docstring
        margin_cal, y_cal, config.seed, groups=examples["lead_id"].to_numpy()[ca]
    )
    model = replace(model, calibrator=calibrator)
    p_test = model.predict_proba(X_test)

    progress("fitting baselines")
    keep = baseline_rows(y, config.max_baseline_rows, config.seed, notes)
    logreg = logistic_baseline(spec, config.seed).fit(X[keep], y[keep], lr__sample_weight=w[keep])
    p_logreg = logreg.predict_proba(X_test)[:, 1]
    rules = RulesBaseline(spec).fit(X[keep], y[keep], X_cal, y_cal, w[keep])
    p_rules = rules.predict_proba(X_test)
    positives, negatives = (source.engine.get(k, 1.0) for k in ("keep_positives", "keep_negatives"))
    class_keep = (
        float(positives) if isinstance(positives, int | float) else 1.0,
        float(negatives) if isinstance(negatives, int | float) else 1.0,
    )
    p_creation = creation_logistic(examples, split, X_all, y_all, spec, config.seed, class_keep)

    progress("evaluating on the test window")
    first_test = np.isin(te, first_moments(examples, te))
    metrics: dict[str, float] = {}
    for prefix, p in (
        ("", p_test),
        ("baseline_logreg_", p_logreg),
        ("baseline_rules_", p_rules),
        ("baseline_creation_logreg_", p_creation),
    ):
        metrics.update({f"{prefix}test_{k}": v for k, v in classification_metrics(y_test, p).items()})
        first = classification_metrics(y_test[first_test], p[first_test])
        metrics.update({f"{prefix}test_first_score_{k}": v for k, v in first.items()})
    notes += compare_at_first_score(y_test[first_test], p_test[first_test], p_creation[first_test], metrics)
    check = calibration_check(y_test, p_test, groups=examples["lead_id"].to_numpy()[te])
    metrics.update(
        {
            "test_calibration_slope": check.slope,
            "test_calibration_intercept": check.intercept,
            "test_calibration_mean_difference": check.mean_difference,
            "test_calibration_passes": float(check.passes),
        }
    )
    notes.append(f"calibration check on the test window: {'passed' if check.passes else 'FAILED'} ({check.reason})")
    inflow, inflow_interval, inflow_basis = weekly_inflow(source, config, notes)
    label_horizon = config.horizon_days if source.has_time else None  # no time: the export's own label
    test_rows = examples.iloc[te]
    segment_col = next((c for c in ("lead_source", "Lead Source") if c in test_rows.columns), None)
    predictions = pd.DataFrame(
        {
            "lead_id": test_rows["lead_id"].to_numpy(),
            "as_of": test_rows["as_of"].to_numpy(),
            "created_at": test_rows["created_at"].to_numpy(),
            "moment": test_rows["moment"].astype(str).to_numpy(),
            "won_at": test_rows["won_at"].to_numpy(),
            "lead_source": test_rows[segment_col].astype("string").to_numpy() if segment_col else None,
            "probability": p_test,
            "label": y_test,
            "weight": w_test,
        }
    )
    follow = split.windows.get("test_follow_up_days")
    trade = TradeOff.from_predictions(
        predictions, inflow, label_horizon, inflow_interval, inflow_basis, int(follow) if follow else None
    )
    table = trade.table()

    progress("auditing attributes for leakage")
    audit = audit_attributes(examples, split, source.lead_columns, config.seed)
    notes += audit.lines()
    fingerprint = source.fingerprint
    model = replace(  # a new instance, so what it derives from its meta (score reference, cut-offs) is set
        model,
        meta={
            "model_name": config.model_name,
            "trained_at": datetime.now(UTC).isoformat(),
            "horizon_days": config.horizon_days,
            "scoring_moments": moment_config(config).to_dict(),
            "example_weight": (
                "fitting: 1 / scoring moments of the lead in its window (every lead weighs one); calibration and "
                "test figures: every scoring moment counts once (first-score figures: every lead once)"
            ),
            "split": split.kind,
            "windows": split.windows,
            "data_fingerprint": fingerprint,
            "metrics": metrics,
            "calibration": {"method": calibrator.method, "cv_log_loss": cal_scores},
            "model_selection": selection,
            "margin_model": "lightgbm" if booster is not None else "logistic_regression",
            "best_iteration": int(booster.best_iteration or booster.current_iteration()) if booster else None,
            "score_reference": score_reference(p_test, w_test),
            # every test scoring moment counts one, as every answer served does (not each lead one); on arrival:
            # each test lead at its creation moment
            "drift_reference": drift_reference(
                p_test,
                X_test,
                spec.feature_names,
                spec.categorical_feature_names,
                arrival=first_test & (examples["moment"].to_numpy()[te] == "creation"),
            ).to_dict(),
            "default_cutoffs": trade.default_cutoffs(),
            "leads_per_week": inflow,
            "leads_per_week_interval": list(inflow_interval),
            "leads_per_week_basis": inflow_basis,
            "label_horizon_days": label_horizon,
            "test_rows": len(y_test),
            "test_leads": int(first_test.sum()),
            "flat_export": asdict(source.flat) if source.flat else None,
            "excluded_columns": list(source.excluded_columns),
            "engine": source.engine,
            "leakage_suspects": [a.column for a in audit.suspects],
            "seed": config.seed,
        },
    )
    evaluation = Evaluation(
        example=pd.DataFrame(X_test[:5], columns=spec.feature_names),
        predictions=predictions,
        table=table,
        segment_col=segment_col,
        p_logreg=p_logreg,
        p_rules=p_rules,
        audit=audit,
        importance=feature_importance(model, X_test, w_test),
    )
    return _track_and_register(config, model, evaluation, Examples(examples, split, source), notes, started, progress)


def compare_at_first_score(
    y: np.ndarray, p_model: np.ndarray, p_creation: np.ndarray, metrics: dict[str, float]
) -> list[str]:
    """The model against the creation-time logistic regression at each test lead's first score (one row per
    lead, so rows are independent): ROC AUC difference with DeLong's 95% interval, and log loss difference
    (nats per lead) with the interval of a paired mean, into ``metrics``
    (``test_first_score_{roc_auc,log_loss}_difference_vs_creation_logreg`` and ``..._low`` / ``..._high``);
    returns the note. Nothing when either class has fewer than two leads."""
    y = np.asarray(y)
    if min(int((y == 1).sum()), int((y == 0).sum())) < 2:
        return []
    auc = paired_auc_difference(y, p_model, p_creation)
    loss = paired_log_loss_difference(y, p_model, p_creation)
    for name, diff in (("roc_auc", auc), ("log_loss", loss)):
        key = f"test_first_score_{name}_difference_vs_creation_logreg"
        metrics.update({key: diff.difference, f"{key}_low": diff.low, f"{key}_high": diff.high})
    return [
        f"at first score ({len(y):,} test leads), against the creation-time logistic regression: "
        f"{auc.words('ROC AUC')}; {loss.words('log loss (nats per lead)')}"
    ]


def feature_importance(model: ScoringModel, X_test: np.ndarray, w_test: np.ndarray) -> pd.DataFrame:
    """Per feature: LightGBM's total gain and split count, or for a logistic regression the (weighted) mean
    absolute contribution to the margin over the test window, in log odds per scoring moment."""
    if model.booster is not None:
        frame = {"gain": model.booster.feature_importance("gain"), "split": model.booster.feature_importance("split")}
        key = "gain"
    else:
        contributions = np.abs(model.contributions(X_test)[:, :-1])
        frame = {"mean_abs_contribution": np.average(contributions, axis=0, weights=w_test)}
        key = "mean_abs_contribution"
    return pd.DataFrame({"feature": model.spec.feature_names, **frame}).sort_values(key, ascending=False)


def audit_attributes(examples: pd.DataFrame, split: Split, lead_columns: list[str], seed: int) -> LeakageAudit:
    """The leakage audit of the lead attributes: one row per training lead (win rates learnt there) scored
    on the calibration leads; a lead counts as won when it was won within the horizon of any of its moments
    (of its moments in the window before any sampling, when ``examples`` has a :data:`LEAD_WON` column)."""
    columns = [c for c in lead_columns if c not in ("lead_id", "created_at")]
    label = LEAD_WON if LEAD_WON in examples.columns else "label"

    def per_lead(rows: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        part = examples.iloc[rows]
        won = part.groupby("lead_id", sort=False)[label].max()
        firsts = part.drop_duplicates("lead_id").set_index("lead_id")
        return firsts.loc[won.index, columns].reset_index(drop=True), won.to_numpy(dtype=np.int64)

    fit, won = per_lead(split.train)
    held_out, held_won = per_lead(split.calibration)
    return audit_leakage(fit, won, evaluation=(held_out, held_won), seed=seed)


def creation_logistic(
    examples: pd.DataFrame,
    split: Split,
    X_all: np.ndarray,
    y_all: np.ndarray,
    spec: FeatureSpec,
    seed: int,
    class_keep: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """The creation-time baseline: a logistic regression fitted on one example per training lead, its first
    scoring moment (at creation), and applied once per test lead at creation: every moment of a test lead
    gets the probability its lead had at creation.

    ``class_keep``: the shares of positive and negative train moments kept when the train window was sampled
    by class (the Dask engine past ``--max-train-examples``). A lead's first kept moment is then often not its
    creation, so the fit takes the kept creation moments, each weighted by 1 / its class's share kept (the
    inverse-probability weights of the sampled fit), which estimate the fit on every training lead."""
    fit_rows = first_moments(examples, split.train)
    weight: dict[str, np.ndarray] = {}
    if min(class_keep) < 1.0 and "moment" in examples.columns:
        creation = split.train[examples["moment"].to_numpy()[split.train] == "creation"]
        if len(np.unique(y_all[creation])) == 2:
            fit_rows = creation
            weight["lr__sample_weight"] = np.where(y_all[creation] == 1, 1.0 / class_keep[0], 1.0 / class_keep[1])
    model = logistic_baseline(spec, seed).fit(X_all[fit_rows], y_all[fit_rows], **weight)
    test_first = first_moments(examples, split.test)
    p_first = pd.Series(model.predict_proba(X_all[test_first])[:, 1], index=examples["lead_id"].to_numpy()[test_first])
    return p_first.reindex(examples["lead_id"].to_numpy()[split.test]).to_numpy(dtype=np.float64)


@dataclass
class Evaluation:
    """What the test window says about the model and its baselines."""

    example: pd.DataFrame
    predictions: pd.DataFrame
    table: pd.DataFrame
    segment_col: str | None
    p_logreg: np.ndarray
    p_rules: np.ndarray
    audit: LeakageAudit
    importance: pd.DataFrame


@dataclass
class Examples:
    """The labelled examples, how they were split, and the data they came from."""

    rows: pd.DataFrame
    split: Split
    source: DataSource


def _track_and_register(
    config: TrainConfig,
    model: ScoringModel,
    evaluation: Evaluation,
    examples: Examples,
    notes: list[str],
    started: float,
    progress: Progress,
) -> TrainResult:
    example, predictions, table = evaluation.example, evaluation.predictions, evaluation.table
    segment_col, p_logreg, p_rules = evaluation.segment_col, evaluation.p_logreg, evaluation.p_rules
    split, source = examples.split, examples.source
    if config.tracking_uri:
        configure_tracking(config.tracking_uri, config.registry_uri)
    experiment_id = ensure_experiment(config.experiment, config.artifact_location)
    metrics = model.meta["metrics"]
    fingerprint = model.meta["data_fingerprint"]
    y_test = predictions["label"].to_numpy()
    progress("logging to MLflow")
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        model.meta["run_id"] = run.info.run_id
        out = Path(tmp)
        params = {
            k: v
            for k, v in asdict(config).items()
            if k not in ("flat", "tracking_uri", "registry_uri", "artifact_location", "cache_dir", "exclude_columns")
        }
        params.update({f"flat_{k}": v for k, v in (asdict(config.flat) if config.flat else {}).items()})
        params.update(
            {
                "data": str(config.data),
                "split": split.kind,
                "n_features": len(model.spec.feature_names),
                "feature_spec_version": model.spec.version,
                "calibration_method": model.calibrator.method,
                "best_iteration": model.meta["best_iteration"],
                "excluded_columns": ",".join(model.spec.excluded_columns) or "(none)",
                **{f"moment_{k}": v for k, v in model.meta["scoring_moments"].items()},
                "model_selection": json.dumps(model.meta["model_selection"]["chosen"]),
                **{f"window_{k}": v for k, v in split.windows.items()},
                **{f"data_{k}": v for k, v in fingerprint.items()},
                **{f"engine_{k}" if k != "engine" else k: v for k, v in source.engine.items()},
            }
        )
        mlflow.log_params({k: (str(v) if v is not None else "None")[:500] for k, v in params.items()})
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        rows = examples.rows
        mlflow.log_metrics(
            {
                "train_examples": len(split.train),
                "calibration_examples": len(split.calibration),
                "test_examples": len(split.test),
                "train_leads": rows["lead_id"].iloc[split.train].nunique(),
                "calibration_leads": rows["lead_id"].iloc[split.calibration].nunique(),
                "test_leads": rows["lead_id"].iloc[split.test].nunique(),
                "test_wins": int(predictions.groupby("lead_id")["label"].max().sum()),
            }
        )
        (out / "split_windows.json").write_text(json.dumps({"kind": split.kind, **split.windows}, indent=2))
        (out / "model_selection.json").write_text(json.dumps(model.meta["model_selection"], indent=2))
        evaluation.audit.to_frame().to_csv(out / "leakage_audit.csv", index=False)
        mlflow.set_tag("leakage_suspects", ",".join(model.meta["leakage_suspects"]) or "(none)")
        if evaluation.audit.exclude_line:
            mlflow.set_tag("leakage_exclude_line", evaluation.audit.exclude_line[:5000])
        mlflow.set_tags({"data_sha256": fingerprint["sha256"], "split": split.kind})
        mlflow.set_tag("input_formats", "; ".join(source.report.reading_lines())[:5000] or "(none)")
        (out / "data_fingerprint.json").write_text(json.dumps(fingerprint, indent=2))
        (out / "validation_report.json").write_text(
            json.dumps({**source.report.to_dict(), "messages": notes}, indent=2)
        )
        (out / "feature_spec.json").write_text(model.spec.to_json())
        evaluation.importance.to_csv(out / "feature_importance.csv", index=False)
        predictions.to_parquet(out / "test_predictions.parquet", index=False)
        table.to_csv(out / "threshold_table.csv", index=False)
        if segment_col:
            seg = segment_auc(y_test, predictions["probability"].to_numpy(), predictions["lead_source"])
            seg.to_csv(out / "segment_auc_by_lead_source.csv", index=False)
        save_plots(
            y_test,
            {"leadscore": predictions["probability"].to_numpy(), "logistic": p_logreg, "rules": p_rules},
            out / "plots",
        )
        mlflow.log_artifacts(str(out))

        progress("registering the model")
        version = log_scoring_model(
            model, example, config.model_name, extra_files={"test_predictions.parquet": predictions}
        )
        tag_version(
            config.model_name,
            version.version,
            {
                **{k: f"{v:.6f}" for k, v in metrics.items() if k.startswith("test_")},
                "data_sha256": fingerprint["sha256"],
                "data_rows": fingerprint["leads"],
                "split": split.kind,
            },
        )
        promoted, message = False, "not promoted (run with --promote to make it the champion)"
        if config.promote:
            promoted, message = decide_promotion(config, model, version.version, examples.rows, split, source)
            if promoted:
                set_alias(config.model_name, "champion", version.version)
        mlflow.set_tag("promoted", str(promoted))
        mlflow.set_tag("promotion", message[:5000])  # why the champion moved or stayed
        mlflow.log_metric("training_seconds", time.perf_counter() - started)
    return TrainResult(
        run_id=run.info.run_id,
        model_version=str(version.version),
        metrics=metrics,
        promoted=promoted,
        promotion_message=message,
        split_kind=split.kind,
        notes=notes,
        model=model,
        leakage_suspects=list(model.meta["leakage_suspects"]),
        exclude_line=evaluation.audit.exclude_line or "",
    )


def decide_promotion(
    config: TrainConfig, model: ScoringModel, version: str, examples: pd.DataFrame, split: Split, source: DataSource
) -> tuple[bool, str]:
    """Promote when the new model passes the calibration check and its test ROC AUC is at least the champion's
    on the same test window (``--force`` promotes anyway). The first model is promoted (so that a fresh install
    serves), with a warning in the message when it fails the calibration check."""
    new_auc = model.meta["metrics"]["test_roc_auc"]
    calibrated = bool(model.meta["metrics"].get("test_calibration_passes", 0.0))
    try:
        champion = load_champion(config.model_name, "champion", config.cache_dir)
    except _NoChampion:
        warning = "" if calibrated else " - WARNING: it fails the calibration check on the test window (see the notes)"
        return True, f"promoted version {version} to champion (there was no champion){warning}"
    if config.force:
        return True, f"promoted version {version} to champion (--force; champion was version {champion.version})"
    if not model.meta["metrics"].get("test_calibration_passes", 0.0):
        return False, (
            f"kept champion version {champion.version}: version {version} fails the calibration check on the test "
            "window (see the notes; use --force to promote anyway)"
        )
    rows = examples.iloc[split.test]
    p_champ = champion.model.predict_proba(source.test_features(champion.model.spec).astype(np.float64))
    champ_auc = classification_metrics(rows["label"].to_numpy(), p_champ)["roc_auc"]
    if new_auc >= champ_auc:
        return True, (
            f"promoted version {version} to champion: test ROC AUC {new_auc:.4f} >= champion version "
            f"{champion.version}'s {champ_auc:.4f} on the same test window"
        )
    return False, (
        f"kept champion version {champion.version}: its test ROC AUC {champ_auc:.4f} beats version {version}'s "
        f"{new_auc:.4f} on the same test window (use --force to promote anyway)"
    )
