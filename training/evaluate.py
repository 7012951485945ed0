"""Model evaluation: metrics, threshold table, per-segment AUC and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score, roc_curve

METRIC_NAMES = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_at_10pct")


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE over ``bins`` equal-frequency bins: sum of |mean p - mean y| weighted by bin size.

    Args:
        y: 0/1 labels.
        p: predicted probabilities.
        bins: number of bins of (nearly) equal size, by sorted probability.

    Returns:
        The expected calibration error, in probability units.
    """
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            total += abs(float(p[chunk].mean()) - float(y[chunk].mean())) * len(chunk)
    return total / max(len(p), 1)


def lift_at(y: np.ndarray, p: np.ndarray, share: float = 0.10) -> float:
    """Win rate among the top ``share`` of leads by probability, over the overall win rate."""
    base = float(np.mean(y))
    if base == 0:
        return float("nan")
    k = max(1, int(round(len(p) * share)))
    top = np.argsort(-p, kind="stable")[:k]
    return float(np.mean(y[top])) / base


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The test metrics every model and baseline reports (names without prefix)."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "lift_at_10pct": lift_at(y, p, 0.10),
    }


def threshold_table(y: np.ndarray, p: np.ndarray, leads_per_week: float, points: int = 101) -> pd.DataFrame:
    """For each cut-off: share qualified, qualified per week, precision, recall, expected wins per week.

    Args:
        y: 0/1 labels of the test window.
        p: calibrated probabilities of the test window.
        leads_per_week: recent inflow of new leads, to turn shares into weekly numbers.
        points: number of cut-offs (quantiles of ``p``, plus 0).
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=np.float64)
    cutoffs = np.unique(np.concatenate([[0.0], np.quantile(p, np.linspace(0, 1, points))]))
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    cum_wins = np.cumsum(y_sorted)
    total_wins = max(int(y.sum()), 1)
    rows = []
    for c in cutoffs:
        k = int(np.searchsorted(-p_sorted, -c, side="right"))  # number with p >= c
        wins = int(cum_wins[k - 1]) if k else 0
        share = k / len(p)
        precision = wins / k if k else float("nan")
        rows.append(
            {
                "cutoff": float(c),
                "share_qualified": share,
                "qualified_per_week": share * leads_per_week,
                "precision": precision,
                "recall": wins / total_wins,
                "expected_wins_per_week": (precision if k else 0.0) * share * leads_per_week,
            }
        )
    return pd.DataFrame(rows)


def segment_auc(y: np.ndarray, p: np.ndarray, segment: pd.Series) -> pd.DataFrame:
    """ROC AUC per segment (e.g. lead source); segments with one class get NaN."""
    rows = []
    for name, idx in pd.Series(np.arange(len(y))).groupby(segment.fillna("(missing)").to_numpy()):
        ys, ps = y[idx.to_numpy()], p[idx.to_numpy()]
        auc = float(roc_auc_score(ys, ps)) if len(np.unique(ys)) == 2 else float("nan")
        rows.append({"segment": name, "leads": len(ys), "wins": int(ys.sum()), "roc_auc": auc})
    return pd.DataFrame(rows)


def save_plots(y: np.ndarray, curves: dict[str, np.ndarray], out: Path) -> list[Path]:
    """ROC, precision-recall, calibration and cumulative-gains plots (PNG) for each named model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve

    out.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC (test window)")
    ax.legend(loc="lower right")
    paths.append(_save(fig, out / "roc.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in curves.items():
        prec, rec, _ = precision_recall_curve(y, p)
        ax.plot(rec, prec, label=f"{name} (AP {average_precision_score(y, p):.3f})")
    ax.axhline(float(np.mean(y)), color="k", ls=":", lw=1)
    ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall (test window)")
    ax.legend(loc="upper right")
    paths.append(_save(fig, out / "precision_recall.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in curves.items():
        frac, mean_p = calibration_curve(y, p, n_bins=10, strategy="quantile")
        ax.plot(mean_p, frac, marker="o", label=name)
    lim = max(float(np.max(list(curves.values())[0])), float(np.mean(y)) * 2)
    ax.plot([0, lim], [0, lim], "k:", lw=1)
    ax.set(xlabel="Predicted probability", ylabel="Observed win rate", title="Calibration (test window)")
    ax.legend(loc="upper left")
    paths.append(_save(fig, out / "calibration.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in curves.items():
        order = np.argsort(-p, kind="stable")
        gains = np.cumsum(y[order]) / max(y.sum(), 1)
        ax.plot(np.arange(1, len(y) + 1) / len(y), gains, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="Share of leads contacted", ylabel="Share of wins caught", title="Cumulative gains (test window)")
    ax.legend(loc="lower right")
    paths.append(_save(fig, out / "cumulative_gains.png"))
    return paths


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=100)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
