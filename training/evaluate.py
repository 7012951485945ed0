"""Model evaluation: metrics, threshold table, per-segment AUC and plots."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score, roc_curve

METRIC_NAMES = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_at_10pct")


def expected_calibration_error(
    y: np.ndarray, p: np.ndarray, bins: int = 10, weights: np.ndarray | None = None
) -> float:
    """ECE over ``bins`` bins of (nearly) equal weight by sorted probability: the weighted mean of
    |mean p - mean y| over the bins (Naeini, Cooper & Hauskrecht 2015, equal-frequency variant).

    Args:
        y: 0/1 labels.
        p: predicted probabilities.
        bins: number of bins.
        weights: example weights (e.g. ``1 / moments of the lead``, so that each lead counts once).

    Returns:
        The expected calibration error, in probability units.
    """
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    cum = np.cumsum(w[order])
    total_w = cum[-1] if len(cum) else 0.0
    if total_w <= 0:
        return 0.0
    which = np.minimum((cum - w[order] / 2) / total_w * bins, bins - 1).astype(int)
    total = 0.0
    for b in range(bins):
        chunk = order[which == b]
        mass = w[chunk].sum()
        if mass > 0:
            total += abs(float(np.average(p[chunk], weights=w[chunk]) - np.average(y[chunk], weights=w[chunk]))) * mass
    return total / total_w


def lift_at(y: np.ndarray, p: np.ndarray, share: float = 0.10, weights: np.ndarray | None = None) -> float:
    """Win rate among the top ``share`` (of weight) by probability, over the overall win rate."""
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    base = float(np.average(y, weights=w)) if len(y) else 0.0
    if base == 0:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    cum = np.cumsum(w[order])
    k = max(1, int(np.searchsorted(cum, share * cum[-1], side="left")) + 1)
    top = order[:k]
    return float(np.average(y[top], weights=w[top])) / base


def classification_metrics(y: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """The test metrics every model and baseline reports (names without prefix), each example weighted by
    ``weights`` (default 1: the pipeline counts every scoring moment once over all moments, as every answer
    served counts, and every lead once at its first score)."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p, sample_weight=weights)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p, sample_weight=weights)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p, sample_weight=weights)),
        "log_loss": float(log_loss(y, p, labels=[0, 1], sample_weight=weights)),
        "ece": expected_calibration_error(y, p, weights=weights),
        "lift_at_10pct": lift_at(y, p, 0.10, weights),
    }


@dataclass(frozen=True)
class PairedDifference:
    """A figure of model ``a`` minus the same figure of model ``b`` on the same independent rows, with a
    95% interval (units: those of the figure; for log loss, nats per row)."""

    a: float
    b: float
    difference: float
    low: float
    high: float

    def words(self, name: str, digits: int = 4) -> str:
        """``"0.7803 against 0.7859: -0.0056 (95% interval -0.0120 to +0.0008)"`` for ``name``."""
        return (
            f"{name} {self.a:.{digits}f} against {self.b:.{digits}f}: {self.difference:+.{digits}f} "
            f"(95% interval {self.low:+.{digits}f} to {self.high:+.{digits}f})"
        )


def paired_auc_difference(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> PairedDifference:
    """ROC AUC of ``p_a`` minus that of ``p_b`` on the same rows, with DeLong's 95% interval.

    DeLong's estimate of the covariance of two correlated AUCs: each positive row ``i`` has a placement
    ``V10[i]`` (the share of negatives it outranks, ties counting one half) and each negative row ``j`` a
    placement ``V01[j]`` (the share of positives that outrank it); AUC is the mean placement, and
    ``var(AUC_a - AUC_b) = var(V10_a - V10_b) / positives + var(V01_a - V01_b) / negatives`` (sample
    variances). Placements come from midranks (Sun and Xu's fast algorithm), O(n log n). Rows must be
    independent: one row per lead (e.g. each test lead at its first score).

    Sources: E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson (1988), "Comparing the areas under two or more
    correlated receiver operating characteristic curves: a nonparametric approach", Biometrics 44:837-845.
    X. Sun, W. Xu (2014), "Fast implementation of DeLong's algorithm for comparing the areas under correlated
    receiver operating characteristic curves", IEEE Signal Processing Letters 21:1389-1393.

    Args:
        y: 0/1 outcomes, shape (n,).
        p_a, p_b: the two models' scores for the same rows, shape (n,).

    Returns:
        Both AUCs, their difference and its 95% interval (normal approximation).

    Raises:
        ValueError: shapes differ, labels are not 0/1, or fewer than two rows of either class.
    """
    from scipy.stats import norm, rankdata

    y = np.asarray(y)
    scores = [np.asarray(p_a, dtype=np.float64), np.asarray(p_b, dtype=np.float64)]
    if not (y.ndim == 1 and all(s.shape == y.shape for s in scores)):
        raise ValueError(f"y, p_a and p_b need one value per row (got {y.shape}, {scores[0].shape}, {scores[1].shape})")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must be 0/1")
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    if m < 2 or n < 2:
        raise ValueError(f"a DeLong interval needs at least two rows of each class (got {m} won, {n} not won)")
    v10, v01 = [], []
    for s in scores:
        whole = rankdata(s)
        v10.append((whole[pos] - rankdata(s[pos])) / n)
        v01.append(1.0 - (whole[neg] - rankdata(s[neg])) / m)
    auc_a, auc_b = float(v10[0].mean()), float(v10[1].mean())
    variance = float(np.var(v10[0] - v10[1], ddof=1)) / m + float(np.var(v01[0] - v01[1], ddof=1)) / n
    half = float(norm.ppf(0.975)) * math.sqrt(max(variance, 0.0))
    difference = auc_a - auc_b
    return PairedDifference(auc_a, auc_b, difference, difference - half, difference + half)


def paired_log_loss_difference(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> PairedDifference:
    """Mean log loss of ``p_a`` minus that of ``p_b`` on the same independent rows (nats per row), with the
    95% interval of a mean of paired differences (``mean +- 1.96 sd / sqrt(n)``). Probabilities are
    clipped to [1e-7, 1 - 1e-7], as :func:`classification_metrics` does.

    Raises:
        ValueError: shapes differ, labels are not 0/1, or fewer than two rows.
    """
    from scipy.stats import norm

    y = np.asarray(y, dtype=np.float64)
    losses = []
    for p in (p_a, p_b):
        q = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
        if q.shape != y.shape:
            raise ValueError(f"y and the probabilities need one value per row (got {y.shape}, {q.shape})")
        losses.append(-(y * np.log(q) + (1 - y) * np.log1p(-q)))
    if not np.isin(y, (0.0, 1.0)).all() or len(y) < 2:
        raise ValueError("y must be 0/1, with at least two rows")
    d = losses[0] - losses[1]
    half = float(norm.ppf(0.975)) * float(np.std(d, ddof=1)) / math.sqrt(len(d))
    mean = float(d.mean())
    return PairedDifference(float(losses[0].mean()), float(losses[1].mean()), mean, mean - half, mean + half)


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


# ---------------------------------------------------------------------------------------------
# Calibration check: the first levels of the calibration hierarchy, and ECE against its noise floor
# ---------------------------------------------------------------------------------------------
CALIBRATION_MEAN_TOLERANCE = 0.10
"""Calibration in the large: |mean p - win rate| allowed, as a share of the win rate (or the noise, if larger)."""
CALIBRATION_NOISE_Z = 3.0
"""Standard deviations of the win rate allowed (calibrated predictions fail by chance 3 times in 1,000)."""
CALIBRATION_SLOPE_BAND = (0.8, 1.25)
"""Calibration slopes accepted (symmetric on a log scale around 1), widened by 1.96 standard errors."""
CALIBRATION_MAX_SLOPE_SE = 0.2
"""The slope must be known to +-0.2 (one standard error): predictions that vary too little cannot pass."""
CALIBRATION_ECE_NOISE_FACTOR = 2.0
"""ECE allowed: this many times the ECE that calibrated predictions would show by chance, plus the mean tolerance."""
CALIBRATION_ECE_DRAWS = 100
"""Simulated outcome sets drawn from ``p`` to measure the ECE that chance alone gives."""
_LOGIT_CLIP = 1e-7
_CONSTANT_LOGIT_SD = 1e-6


@dataclass(frozen=True)
class CalibrationCheck:
    """The result of :func:`calibration_check`; rates and ECE are in probability units, per row (weighted).

    Attributes:
        rows: rows checked.
        mean_predicted: (weighted) mean predicted probability.
        observed_rate: (weighted) share of rows that were won.
        mean_difference: ``mean_predicted - observed_rate`` (calibration in the large; 0 is ideal).
        mean_difference_allowed: the largest ``|mean_difference|`` that passes.
        intercept: calibration intercept, logit scale: ``a`` in ``logit P(y=1) = a + logit(p)`` (0 is ideal).
        slope: calibration slope: ``b`` in ``logit P(y=1) = a' + b logit(p)`` (1 is ideal; below 1, the
            predictions are too extreme; above 1, too timid); NaN when it cannot be estimated.
        slope_se: its standard error (inf when it cannot be estimated).
        ece: expected calibration error (:func:`expected_calibration_error`, 10 bins).
        ece_allowed: the largest ECE that passes.
        passes: every criterion holds.
        reason: why it fails, or what it passed, in one sentence.
    """

    rows: int
    mean_predicted: float
    observed_rate: float
    mean_difference: float
    mean_difference_allowed: float
    intercept: float
    slope: float
    slope_se: float
    ece: float
    ece_allowed: float
    passes: bool
    reason: str


def calibration_check(
    y: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None, groups: np.ndarray | pd.Series | None = None
) -> CalibrationCheck:
    """Whether predicted probabilities are calibrated, on the first levels of the calibration hierarchy.

    ECE alone is not a calibration check: a constant prediction of 0 has an ECE equal to the win rate,
    under 0.05 at a 3% win rate, and a constant prediction of the win rate has an ECE of about 0. This
    check asks, in the order of the calibration hierarchy of Van Calster et al. (2016):

    1. **The predictions vary.** The calibration slope is estimable only if ``logit(p)`` varies: a
       constant (or nearly constant) prediction carries no information about which rows win, and fails.
       Its standard error must be at most ``CALIBRATION_MAX_SLOPE_SE`` (0.2), which also fails a test set
       too small to tell a slope of 1 from one of 0.6.
    2. **Calibration in the large (mean calibration).** ``|mean p - win rate|`` is at most
       ``CALIBRATION_MEAN_TOLERANCE`` (10%) of the win rate, or ``CALIBRATION_NOISE_Z`` (3) times the
       standard deviation the win rate would have if the predictions were right, whichever is larger: a
       model is not failed for noise, and the tolerance scales with the base rate (a 0.5-point miss is
       small at 40% and large at 3%). Predicting twice the true rate fails.
    3. **Weak calibration: the calibration slope.** Logistic recalibration (Cox 1958) fits
       ``logit P(y=1) = a + b logit(p)``; ``b`` is the calibration slope (1 is ideal; below 1 the
       predictions are too extreme, as from an overfit model; above 1 too timid). It must lie in
       ``CALIBRATION_SLOPE_BAND`` (0.8 to 1.25, symmetric around 1 on a log scale) widened by 1.96
       standard errors: fail only a slope known to be outside it, e.g. 0.3. The calibration intercept
       (``a`` with ``b`` fixed at 1, an offset model) is reported, not tested: step 2 tests the same
       property in probability units, which the trade-off's expected wins are counted in.
    4. **Moderate calibration, roughly: ECE** (:func:`expected_calibration_error`, 10 bins). At most
       ``CALIBRATION_ECE_NOISE_FACTOR`` (2) times the ECE that calibrated predictions show by chance (its
       mean over ``CALIBRATION_ECE_DRAWS`` outcome sets drawn from ``p`` itself, seeded), plus 10% of the
       win rate: ECE only counts beyond its noise floor, which grows as the bins get fewer rows.

    Weights count rows: a weight of 2 is the row seen twice, in every figure and standard error.

    **Rows of one lead are not independent.** A lead scored at five moments and won is a win at most of
    them. ``groups`` (one id per row, e.g. the lead id) makes every standard error count leads, not rows:
    the noise of the mean difference is the larger of the independent-rows figure and the cluster-robust one,
    ``sqrt(sum over leads of (sum of its rows' w (y - p - d))^2) / sum w`` with ``d`` the mean difference;
    the slope's standard error is the cluster-robust (sandwich) one of Liang and Zeger (1986); and the
    outcome sets that give ECE's noise floor draw one uniform number per lead (a lead's rows win together,
    each at its own probability). Without ``groups`` every row is its own group.

    Sources: D. R. Cox (1958), "Two further applications of a model for binary regression", Biometrika
    45:562-565. B. Van Calster, D. Nieboer, Y. Vergouwe, B. De Cock, M. J. Pencina, E. W. Steyerberg
    (2016), "A calibration hierarchy for risk models was defined: from utopia to empirical data",
    J. Clin. Epidemiol. 74:167-176. B. Van Calster, D. J. McLernon, M. van Smeden, L. Wynants,
    E. W. Steyerberg (2019), "Calibration: the Achilles heel of predictive analytics", BMC Medicine 17:230.
    K.-Y. Liang, S. L. Zeger (1986), "Longitudinal data analysis using generalized linear models",
    Biometrika 73:13-22.

    Args:
        y: 0/1 outcomes.
        p: predicted probabilities (clipped to [1e-7, 1 - 1e-7] for the logit).
        weights: optional non-negative weight per row (default 1).
        groups: optional group id per row (the rows of a group are one unit for every standard error).

    Returns:
        The figures of each level, whether all criteria hold, and why not.

    Raises:
        ValueError: lengths differ, labels are not 0/1, probabilities are outside [0, 1] or not finite, or
            weights are negative or sum to 0, or ``groups`` has not one id per row.
    """
    y, p, w = _calibration_inputs(y, p, weights)
    codes = _group_codes(groups, len(y))
    total = float(w.sum())
    mean_p = float(w @ p) / total
    rate = float(w @ y) / total
    noise = math.sqrt(float(w @ (p * (1 - p)))) / total
    if codes is not None:
        per_group = np.bincount(codes, weights=w * (y - p - (rate - mean_p)))
        noise = max(noise, math.sqrt(float(per_group @ per_group)) / total)
    mean_allowed = max(CALIBRATION_MEAN_TOLERANCE * rate, CALIBRATION_NOISE_Z * noise)
    ece = expected_calibration_error(y, p, weights=w)
    ece_noise = _ece_by_chance(p, w, codes)
    ece_allowed = CALIBRATION_ECE_NOISE_FACTOR * ece_noise + CALIBRATION_MEAN_TOLERANCE * rate
    x = np.log(np.clip(p, _LOGIT_CLIP, 1 - _LOGIT_CLIP)) - np.log1p(-np.clip(p, _LOGIT_CLIP, 1 - _LOGIT_CLIP))
    both_classes = 0 < float(w @ y) < total
    varies = math.sqrt(float(w @ (x - float(w @ x) / total) ** 2) / total) > _CONSTANT_LOGIT_SD
    slope, slope_se = _calibration_slope(y, x, w, codes) if both_classes and varies else (math.nan, math.inf)
    intercept = _calibration_intercept(y, x, w) if both_classes else math.nan

    low, high = CALIBRATION_SLOPE_BAND
    failures = []
    if not both_classes:
        failures.append(f"all {len(y)} rows are {'won' if rate > 0 else 'lost'}: calibration cannot be checked")
    elif not varies:
        failures.append("the predictions do not vary, so the calibration slope cannot be estimated")
    elif not math.isfinite(slope):
        failures.append("the calibration slope cannot be estimated (the predictions separate won from lost perfectly)")
    elif slope_se > CALIBRATION_MAX_SLOPE_SE:
        failures.append(
            f"the predictions vary too little for {len(y)} rows to estimate the calibration slope "
            f"(standard error {slope_se:.2f} > {CALIBRATION_MAX_SLOPE_SE})"
        )
    elif not low - 1.96 * slope_se <= slope <= high + 1.96 * slope_se:
        way = "too extreme" if slope < low else "too timid"
        failures.append(
            f"calibration slope {slope:.2f} (standard error {slope_se:.2f}) is outside {low}-{high}: the "
            f"predictions are {way}"
        )
    if both_classes and abs(mean_p - rate) > mean_allowed:
        failures.append(
            f"mean prediction {mean_p:.4f} against a win rate of {rate:.4f} (difference allowed {mean_allowed:.4f})"
        )
    if both_classes and ece > ece_allowed:
        failures.append(f"ECE {ece:.4f} above {ece_allowed:.4f}")
    passes = not failures
    reason = (
        f"calibrated: mean prediction {mean_p:.4f} against a win rate of {rate:.4f}, slope {slope:.2f} "
        f"(standard error {slope_se:.2f}), ECE {ece:.4f}"
        if passes
        else "; ".join(failures)
    )
    return CalibrationCheck(
        rows=len(y),
        mean_predicted=mean_p,
        observed_rate=rate,
        mean_difference=mean_p - rate,
        mean_difference_allowed=mean_allowed,
        intercept=intercept,
        slope=slope,
        slope_se=slope_se,
        ece=ece,
        ece_allowed=ece_allowed,
        passes=passes,
        reason=reason,
    )


def _calibration_inputs(
    y: np.ndarray, p: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=np.float64)
    if not (y.ndim == p.ndim == w.ndim == 1 and len(y) == len(p) == len(w)) or len(y) == 0:
        raise ValueError(f"y, p and weights need one value per row (got {y.shape}, {p.shape}, {w.shape})")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must be 0/1")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("p must be probabilities in [0, 1]")
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ValueError("weights must be finite, non-negative and not all 0")
    return y, p, w


def _group_codes(groups: np.ndarray | pd.Series | None, rows: int) -> np.ndarray | None:
    """``groups`` as codes 0..G-1 (None stays None: every row its own group)."""
    if groups is None:
        return None
    values = np.asarray(groups)
    if values.shape != (rows,):
        raise ValueError(f"groups need one id per row (got {values.shape} for {rows} rows)")
    codes = pd.factorize(values)[0].astype(np.int64)
    if (codes < 0).any():
        raise ValueError(f"groups must not be missing ({int((codes < 0).sum())} missing ids)")
    return codes


def _ece_by_chance(p: np.ndarray, w: np.ndarray, codes: np.ndarray | None = None) -> float:
    """The ECE calibrated predictions would show by chance: its mean over outcomes drawn from ``p`` itself.

    ``CALIBRATION_ECE_DRAWS`` seeded draws, binned exactly as :func:`expected_calibration_error` bins. With
    ``codes`` (group per row) a group's rows share one uniform number, row ``i`` winning when it is below
    ``p[i]``: each row keeps its probability and a group's rows win together as far as they can.
    """
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(CALIBRATION_ECE_DRAWS):
        u = rng.random(len(p)) if codes is None else rng.random(int(codes.max()) + 1)[codes]
        draws.append(expected_calibration_error((u < p).astype(np.float64), p, weights=w))
    return float(np.mean(draws))


def _calibration_slope(
    y: np.ndarray, x: np.ndarray, w: np.ndarray, codes: np.ndarray | None = None
) -> tuple[float, float]:
    """Slope ``b`` of the weighted logistic fit ``logit P(y=1) = a + b x`` and its standard error (Newton):
    model-based, or with ``codes`` (group per row) cluster-robust (sandwich, Liang and Zeger 1986).

    Fits on ``x`` standardised (the fit is then well conditioned however little ``x`` varies) and scales
    back. Returns (NaN, inf) when the fit does not converge (perfect separation).
    """
    centre = float(w @ x) / float(w.sum())
    scale = math.sqrt(float(w @ (x - centre) ** 2) / float(w.sum()))
    design = np.column_stack([np.ones_like(x), (x - centre) / scale])
    beta = np.zeros(2)

    def loglik(b: np.ndarray) -> float:
        eta = design @ b
        return float(w @ (y * eta - np.logaddexp(0.0, eta)))

    current = loglik(beta)
    for _ in range(100):
        mu = 1.0 / (1.0 + np.exp(-(design @ beta)))
        gradient = design.T @ (w * (y - mu))
        hessian = (design * (w * mu * (1 - mu))[:, None]).T @ design
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return math.nan, math.inf
        size = 1.0
        while loglik(beta + size * step) < current - 1e-12 and size > 1e-8:
            size /= 2
        beta = beta + size * step
        current = loglik(beta)
        if np.max(np.abs(size * step)) < 1e-10:
            break
    else:
        return math.nan, math.inf
    if abs(beta[1]) > 1e6:
        return math.nan, math.inf
    mu = 1.0 / (1.0 + np.exp(-(design @ beta)))
    hessian = (design * (w * mu * (1 - mu))[:, None]).T @ design
    try:
        covariance = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return math.nan, math.inf
    if codes is not None:
        scores = design * (w * (y - mu))[:, None]
        per_group = np.column_stack([np.bincount(codes, weights=scores[:, k]) for k in range(2)])
        covariance = covariance @ (per_group.T @ per_group) @ covariance
    return float(beta[1]) / scale, math.sqrt(max(float(covariance[1, 1]), 0.0)) / scale


def _calibration_intercept(y: np.ndarray, x: np.ndarray, w: np.ndarray) -> float:
    """``a`` in ``logit P(y=1) = a + x`` (slope fixed at 1): the root of ``sum w (y - expit(a + x))``."""
    from scipy.optimize import brentq
    from scipy.special import expit

    def score(a: float) -> float:
        return float(w @ (y - expit(a + x)))

    return float(brentq(score, -50.0, 50.0, xtol=1e-12))
