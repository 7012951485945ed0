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
from training.baselines import RulesBaseline, logistic_baseline
from training.data import CRMData, FlatExportOptions, load_crm_data
from training.evaluate import classification_metrics, save_plots, segment_auc, threshold_table
from training.snapshots import SnapshotConfig, flat_examples, make_snapshots

Progress = Callable[[str], None]
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
    """The training window has too few wins or non-wins to learn from."""


@dataclass
class TrainConfig:
    """Everything a training run depends on (all of it is logged as MLflow params)."""

    data: Path
    flat: FlatExportOptions | None = None
    strict: bool = False
    horizon_days: int = 90
    experiment: str = "leadscore"
    model_name: str = "leadscore"
    promote: bool = False
    force: bool = False
    seed: int = 42
    snapshot_every_days: int = 30
    max_lead_age_days: int = 180
    half_life_days: float = 14.0
    test_fraction: float = 0.2
    calibration_fraction: float = 0.2
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 100
    max_bin: int = 63
    num_boost_round: int = 1000
    early_stopping_rounds: int = 50
    min_class_count: int = 50
    max_baseline_rows: int = 250_000
    leads_per_week: float | None = None
    num_threads: int = 0
    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_location: str | None = None
    cache_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "leadscore-model-cache")


@dataclass
class Split:
    """Which examples fit, calibrate and test the model, and how the split was made."""

    kind: str  # "time" or "stratified"
    train: np.ndarray
    calibration: np.ndarray
    test: np.ndarray
    windows: dict[str, str]


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

    def metric_table(self) -> list[tuple[str, float, float, float]]:
        """(metric, model, logistic baseline, rules baseline) rows."""
        names = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_at_10pct")
        m = self.metrics
        return [(n, m[f"test_{n}"], m[f"baseline_logreg_test_{n}"], m[f"baseline_rules_test_{n}"]) for n in names]


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------
def make_examples(data: CRMData, config: TrainConfig) -> pd.DataFrame:
    """Labelled snapshots (touch data) or one example per lead (flat export)."""
    if data.flat is not None or (data.touchpoints is None and not data.has_time):
        return flat_examples(data)
    snap = SnapshotConfig(config.horizon_days, config.snapshot_every_days, config.max_lead_age_days)
    return make_snapshots(data, snap)


def split_examples(examples: pd.DataFrame, has_time: bool, config: TrainConfig, notes: list[str]) -> Split:
    """Time split (train on the earliest snapshots, calibrate later, test latest) or stratified fallback."""
    times = pd.DatetimeIndex(examples["as_of"].unique()).sort_values()
    if has_time and len(times) >= 3 and examples["as_of"].nunique() > 1:
        n_test = max(1, int(round(len(times) * config.test_fraction)))
        n_cal = max(1, int(round(len(times) * config.calibration_fraction)))
        test_from, cal_from = times[-n_test], times[-n_test - n_cal]
        as_of = examples["as_of"]
        windows = {
            "train": f"{times[0].date()} .. {times[-n_test - n_cal - 1].date()}",
            "calibration": f"{cal_from.date()} .. {times[-n_test - 1].date()}",
            "test": f"{test_from.date()} .. {times[-1].date()}",
        }
        return Split(
            "time",
            np.flatnonzero((as_of < cal_from).to_numpy()),
            np.flatnonzero(((as_of >= cal_from) & (as_of < test_from)).to_numpy()),
            np.flatnonzero((as_of >= test_from).to_numpy()),
            windows,
        )
    notes.append("no usable time information: stratified random split (train/calibration/test), not out-of-time")
    idx = np.arange(len(examples))
    y = examples["label"].to_numpy()
    rest, test = train_test_split(idx, test_size=config.test_fraction, stratify=y, random_state=config.seed)
    cal_share = config.calibration_fraction / (1 - config.test_fraction)
    train, cal = train_test_split(rest, test_size=cal_share, stratify=y[rest], random_state=config.seed)
    return Split("stratified", np.sort(train), np.sort(cal), np.sort(test), {})


def check_enough(y_train: np.ndarray, minimum: int) -> None:
    wins, losses = int(y_train.sum()), int(len(y_train) - y_train.sum())
    if wins < minimum or losses < minimum:
        raise NotEnoughData(
            f"the training window has {wins} wins and {losses} non-wins; at least {minimum} of each are needed "
            "(add data, lengthen the data range, or shorten --horizon-days)"
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
        "monotone_constraints": monotone_constraints(spec.feature_infos()),
        "monotone_constraints_method": "basic",
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbosity": -1,
    }


def fit_booster(
    X: np.ndarray, y: np.ndarray, X_cal: np.ndarray, y_cal: np.ndarray, spec: FeatureSpec, config: TrainConfig
) -> lgb.Booster:
    """LightGBM with native categorical handling, early-stopped on the calibration window."""
    names = spec.feature_names
    cats = [names.index(c) for c in spec.categorical_feature_names]
    train_set = lgb.Dataset(X, y, feature_name=names, categorical_feature=cats, free_raw_data=True)
    valid_set = lgb.Dataset(X_cal, y_cal, reference=train_set)
    return lgb.train(
        lightgbm_params(config, spec),
        train_set,
        num_boost_round=config.num_boost_round,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )


def choose_calibrator(margin: np.ndarray, y: np.ndarray, seed: int) -> tuple[Calibrator, dict[str, float]]:
    """Isotonic or sigmoid, whichever has the lower cross-validated log loss on the calibration window."""
    from sklearn.metrics import log_loss

    scores: dict[str, float] = {}
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
    for method in ("sigmoid", "isotonic"):
        losses = []
        for fit_idx, eval_idx in folds.split(margin.reshape(-1, 1), y):
            cal = Calibrator(method).fit(margin[fit_idx], y[fit_idx])
            losses.append(log_loss(y[eval_idx], cal.predict(margin[eval_idx]), labels=[0, 1]))
        scores[method] = float(np.mean(losses))
    best = min(scores, key=lambda m: (scores[m], m))
    return Calibrator(best).fit(margin, y), scores


def baseline_sample(
    X: np.ndarray, y: np.ndarray, max_rows: int, seed: int, notes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_rows`` training rows for the linear baselines (stratified, seeded); they saturate early."""
    if len(y) <= max_rows:
        return X, y
    keep, _ = train_test_split(np.arange(len(y)), train_size=max_rows, stratify=y, random_state=seed)
    keep = np.sort(keep)
    notes.append(f"baselines fitted on a stratified sample of {max_rows:,} of {len(y):,} training rows")
    return X[keep], y[keep]


def weekly_inflow(data: CRMData, config: TrainConfig, notes: list[str]) -> float:
    """New leads per week over the last 12 weeks of data (or the given figure)."""
    if config.leads_per_week:
        return float(config.leads_per_week)
    if not data.has_time:
        notes.append("no time column: per-week figures assume the export covers one year")
        return len(data.leads) / 52.0
    created = data.leads["created_at"]
    recent = created >= data.end_time - pd.Timedelta(weeks=12)
    return float(recent.sum()) / 12.0


def score_reference(p: np.ndarray) -> list[float]:
    return np.quantile(p, np.linspace(0, 1, 1001)).round(8).tolist()


def default_cutoffs(p: np.ndarray) -> dict[str, float]:
    """Until a policy exists: A = top 10%, B = next 20%, C = next 30%; qualified = A or B."""
    a, b, c = (float(np.quantile(p, q)) for q in (0.9, 0.7, 0.4))
    return {"a": a, "b": b, "c": c, "qualified": b}


# ---------------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------------
def train(config: TrainConfig, progress: Progress = lambda _: None) -> TrainResult:
    """Load, validate, split, fit, evaluate, log to MLflow and register; promote when asked and earned.

    Raises:
        DataValidationError: the data breaks the contract (strict mode or missing columns).
        NotEnoughData: fewer than ``min_class_count`` wins or non-wins in the training window.
    """
    started = time.perf_counter()
    notes: list[str] = []
    progress("loading and validating data")
    data = load_crm_data(config.data, flat=config.flat, strict=config.strict)
    notes += data.report.notes + data.report.lines()

    progress("building snapshots and labels")
    examples = make_examples(data, config)
    split = split_examples(examples, data.has_time, config, notes)
    y_all = examples["label"].to_numpy()
    check_enough(y_all[split.train], config.min_class_count)
    for name, idx in (("calibration", split.calibration), ("test", split.test)):
        if len(np.unique(y_all[idx])) < 2:
            raise NotEnoughData(f"the {name} window has only one class; add data or shorten --horizon-days")

    progress("building point-in-time features")
    lead_cols = [c for c in data.leads.columns]
    train_rows = examples.iloc[split.train]
    touches = data.touchpoints
    known_touches = None
    if touches is not None:
        known_touches = touches[touches["occurred_at"] <= train_rows["as_of"].max()]
    spec = infer_spec(
        train_rows[lead_cols],
        known_touches,
        exclude_columns=data.flat.exclude_columns if data.flat else (),
        half_life_days=config.half_life_days,
    )
    features = build_features(examples[lead_cols], touches, examples["as_of"], spec)
    X_all = features.to_numpy(dtype=np.float32)
    del features
    X, y = X_all[split.train], y_all[split.train]
    X_cal, y_cal = X_all[split.calibration], y_all[split.calibration]
    X_test, y_test = X_all[split.test], y_all[split.test]

    progress(f"fitting LightGBM on {len(y):,} examples ({int(y.sum()):,} wins)")
    booster = fit_booster(X, y, X_cal, y_cal, spec, config)
    calibrator, cal_scores = choose_calibrator(np.asarray(booster.predict(X_cal, raw_score=True)), y_cal, config.seed)
    model = ScoringModel(spec=spec, booster=booster, calibrator=calibrator)
    p_test = model.predict_proba(X_test)

    progress("fitting baselines")
    Xb, yb = baseline_sample(X, y, config.max_baseline_rows, config.seed, notes)
    logreg = logistic_baseline(spec, config.seed).fit(Xb, yb)
    p_logreg = logreg.predict_proba(X_test)[:, 1]
    rules = RulesBaseline(spec).fit(Xb, yb, X_cal, y_cal)
    p_rules = rules.predict_proba(X_test)

    progress("evaluating on the test window")
    metrics: dict[str, float] = {}
    for prefix, p in (("", p_test), ("baseline_logreg_", p_logreg), ("baseline_rules_", p_rules)):
        metrics.update({f"{prefix}test_{k}": v for k, v in classification_metrics(y_test, p).items()})
    inflow = weekly_inflow(data, config, notes)
    table = threshold_table(y_test, p_test, inflow)
    test_rows = examples.iloc[split.test]
    segment_col = next((c for c in ("lead_source", "Lead Source") if c in test_rows.columns), None)
    predictions = pd.DataFrame(
        {
            "lead_id": test_rows["lead_id"].to_numpy(),
            "as_of": test_rows["as_of"].to_numpy(),
            "lead_source": test_rows[segment_col].to_numpy() if segment_col else None,
            "probability": p_test,
            "label": y_test,
        }
    )
    fingerprint = data.fingerprint()
    model = replace(  # a new instance, so what it derives from its meta (score reference, cut-offs) is set
        model,
        meta={
            "model_name": config.model_name,
            "trained_at": datetime.now(UTC).isoformat(),
            "horizon_days": config.horizon_days,
            "split": split.kind,
            "windows": split.windows,
            "data_fingerprint": fingerprint,
            "metrics": metrics,
            "calibration": {"method": calibrator.method, "cv_log_loss": cal_scores},
            "best_iteration": int(booster.best_iteration or booster.current_iteration()),
            "score_reference": score_reference(p_test),
            "default_cutoffs": default_cutoffs(p_test),
            "leads_per_week": inflow,
            "test_rows": len(y_test),
            "flat_export": asdict(data.flat) if data.flat else None,
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
    )
    return _track_and_register(config, model, evaluation, Examples(examples, split, data), notes, started, progress)


@dataclass
class Evaluation:
    """What the test window says about the model and its baselines."""

    example: pd.DataFrame
    predictions: pd.DataFrame
    table: pd.DataFrame
    segment_col: str | None
    p_logreg: np.ndarray
    p_rules: np.ndarray


@dataclass
class Examples:
    """The labelled examples, how they were split, and the data they came from."""

    rows: pd.DataFrame
    split: Split
    data: CRMData


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
    split, data = examples.split, examples.data
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
            if k not in ("flat", "tracking_uri", "registry_uri", "artifact_location", "cache_dir")
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
                **{f"window_{k}": v for k, v in split.windows.items()},
                **{f"data_{k}": v for k, v in fingerprint.items()},
            }
        )
        mlflow.log_params({k: (str(v) if v is not None else "None")[:500] for k, v in params.items()})
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_metrics(
            {
                "train_examples": len(split.train),
                "calibration_examples": len(split.calibration),
                "test_examples": len(split.test),
                "test_wins": int(y_test.sum()),
            }
        )
        mlflow.set_tags({"data_sha256": fingerprint["sha256"], "split": split.kind})
        (out / "data_fingerprint.json").write_text(json.dumps(fingerprint, indent=2))
        (out / "validation_report.json").write_text(json.dumps({**data.report.to_dict(), "messages": notes}, indent=2))
        (out / "feature_spec.json").write_text(model.spec.to_json())
        importance = pd.DataFrame(
            {
                "feature": model.spec.feature_names,
                "gain": model.booster.feature_importance("gain"),
                "split": model.booster.feature_importance("split"),
            }
        ).sort_values("gain", ascending=False)
        importance.to_csv(out / "feature_importance.csv", index=False)
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
            promoted, message = decide_promotion(config, model, version.version, examples.rows, split, data)
            if promoted:
                set_alias(config.model_name, "champion", version.version)
        mlflow.set_tag("promoted", str(promoted))
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
    )


def decide_promotion(
    config: TrainConfig, model: ScoringModel, version: str, examples: pd.DataFrame, split: Split, data: CRMData
) -> tuple[bool, str]:
    """Promote when the new model's test ROC AUC is at least the champion's on the same test window."""
    new_auc = model.meta["metrics"]["test_roc_auc"]
    try:
        champion = load_champion(config.model_name, "champion", config.cache_dir)
    except _NoChampion:
        return True, f"promoted version {version} to champion (there was no champion)"
    if config.force:
        return True, f"promoted version {version} to champion (--force; champion was version {champion.version})"
    rows = examples.iloc[split.test]
    lead_cols = list(data.leads.columns)
    X_champ = build_features(rows[lead_cols], data.touchpoints, rows["as_of"], champion.model.spec).to_numpy(
        dtype=np.float64
    )
    champ_auc = classification_metrics(rows["label"].to_numpy(), champion.model.predict_proba(X_champ))["roc_auc"]
    if new_auc >= champ_auc:
        return True, (
            f"promoted version {version} to champion: test ROC AUC {new_auc:.4f} >= champion version "
            f"{champion.version}'s {champ_auc:.4f} on the same test window"
        )
    return False, (
        f"kept champion version {champion.version}: its test ROC AUC {champ_auc:.4f} beats version {version}'s "
        f"{new_auc:.4f} on the same test window (use --force to promote anyway)"
    )
