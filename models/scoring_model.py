"""The scoring model as one unit: feature spec + margin model (a LightGBM booster, or the regularised logistic
regression model selection may prefer) + calibrator + reason labels + score scale."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from features.kernel import NEVER_DAYS
from features.spec import FeatureInfo, FeatureSpec
from models.calibration import Calibrator
from models.cutoffs import Grade, GradeCutoffs  # noqa: F401  (re-exported: where they were defined first)
from models.linear import LinearMargin
from models.reasons import TOUCH_PHRASES, describe
from models.trees import TreeArrays

FORMAT_VERSION = 1
GRADES = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Reason:
    feature: str
    description: str
    impact: float


@dataclass(frozen=True)
class Explanation:
    """A lead's score split into what it is (fit) and what it does (engagement), with reasons."""

    fit: int
    engagement: int
    reasons: list[Reason]


FAST_ROWS = 16  # up to this many rows are walked by :class:`models.trees.TreeArrays` (Booster.predict beyond)


def _threads(X: np.ndarray) -> int:
    """One thread for a handful of rows (thread start-up costs more than it saves), all cores otherwise."""
    return 1 if len(X) < 64 else 0


def score_steps(reference: np.ndarray) -> np.ndarray:
    """The lowest probability of each score 1..100 given a sorted ``reference`` (none if it is empty).

    The score of ``p`` is ``rint(100 * share)``, ``share`` the part of the reference at or below ``p``; it
    changes only where the share crosses a rounding point, so it equals the number of these steps at or
    below ``p``: one search among 100 values instead of one among the reference and three array operations.
    """
    n = len(reference)
    if n == 0:
        return np.zeros(0)
    score_of_count = np.rint(np.arange(n + 1) / n * 100)  # the score of p with ``count`` reference values <= p
    first_count = np.searchsorted(score_of_count, np.arange(1, 101), side="left")  # the fewest giving score s
    return reference[first_count - 1]  # count >= c  <=>  reference[c - 1] <= p


def _group_key(info: FeatureInfo) -> str:
    """Features that say the same thing in different windows are explained together."""
    if info.kind in ("count", "flag") and info.touch_type:
        return info.touch_type
    if info.kind == "channel_count" and info.channel:
        return f"channel_{info.channel}"
    if info.kind in ("total", "recency", "decayed", "velocity", "distinct"):
        return "activity"
    if info.kind == "attribute" and info.attribute:
        return info.attribute
    return info.name


@dataclass
class ScoringModel:
    """Everything the scorer needs; saved as JSON + LightGBM text (no pickles).

    The margin comes from ``booster``, or from ``linear`` when model selection chose the logistic regression
    (then ``booster`` is None).
    """

    spec: FeatureSpec
    booster: lgb.Booster | None
    calibrator: Calibrator
    meta: dict[str, Any] = field(default_factory=dict)
    linear: LinearMargin | None = None

    def __post_init__(self) -> None:
        self._infos = self.spec.feature_infos()
        self._fit_mask = np.array([i.group == "fit" for i in self._infos])
        keys = [_group_key(i) for i in self._infos]
        self._groups = sorted(set(keys))
        self._group_of = np.array([self._groups.index(k) for k in keys])
        self._members = [np.flatnonzero(self._group_of == g) for g in range(len(self._groups))]
        self._reference = np.asarray(self.meta.get("score_reference", []), dtype=np.float64)
        self._score_steps = score_steps(self._reference)
        self._trees: TreeArrays | None = None
        cutoffs = self.meta.get("default_cutoffs") or {"a": 0.5, "b": 0.2, "c": 0.05, "qualified": 0.2}
        self._default_cutoffs = GradeCutoffs(**cutoffs)

    # ---- prediction -----------------------------------------------------------------------
    def prepare(self) -> ScoringModel:
        """Build what scoring a few rows needs (the booster's trees as arrays, compiled), so that the first
        request does not pay for it; the model source calls it when it loads a model, off the event loop."""
        if self.booster is not None and self._trees is None:
            self._trees = TreeArrays.from_booster(self.booster)
            self._trees.margins(np.zeros((1, self._trees.n_features), dtype=np.float32))  # compiles the walk
        return self

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw margins: a few rows, as the scoring server sends, walk the trees (:mod:`models.trees`, the same
        numbers as ``Booster.predict``), more go through ``Booster.predict`` on all cores."""
        if self.linear is not None:
            return self.linear.margin(X)
        assert self.booster is not None
        if len(X) <= FAST_ROWS:
            return self.prepare()._trees.margins(X)  # type: ignore[union-attr]
        return np.asarray(self.booster.predict(X, raw_score=True, num_threads=_threads(X)), dtype=np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability of a won deal within the horizon."""
        if len(X) == 0:
            return np.zeros(0)
        return self.calibrator.predict(self.margin(X))

    def score(self, p: np.ndarray) -> np.ndarray:
        """0-100: the share of the reference (test-window) leads with a lower probability."""
        p = np.asarray(p, dtype=np.float64)
        if len(self._reference) == 0:
            return np.rint(p * 100).astype(int)
        # = rint(100 * share), see score_steps; the method, not np.searchsorted's Python dispatcher (~1 us)
        return self._score_steps.searchsorted(p, side="right")

    @property
    def default_cutoffs(self) -> GradeCutoffs:
        """The cut-offs chosen at training (from the test window), until a policy sets others."""
        return self._default_cutoffs

    # ---- explanations ---------------------------------------------------------------------
    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the raw margin (last column: the bias): LightGBM's own (TreeSHAP), or
        the linear model's exact ones."""
        if self.linear is not None:
            return self.linear.contributions(X)
        assert self.booster is not None
        return np.asarray(self.booster.predict(X, pred_contrib=True, num_threads=_threads(X)), dtype=np.float64)

    def explain(
        self, X: np.ndarray, raw_attributes: Sequence[dict[str, Any]] | None = None, top: int = 3
    ) -> list[Explanation]:
        """Reasons (top positive and top negative) and the fit/engagement split for each row."""
        if len(X) == 0:
            return []
        contrib = self.contributions(X)
        bias = contrib[:, -1]
        per_feature = contrib[:, :-1]
        fit_margin = bias + per_feature[:, self._fit_mask].sum(axis=1)
        eng_margin = bias + per_feature[:, ~self._fit_mask].sum(axis=1)
        fit = self.score(self.calibrator.predict(fit_margin))
        engagement = self.score(self.calibrator.predict(eng_margin))
        grouped = np.zeros((len(X), len(self._groups)))
        np.add.at(grouped.T, self._group_of, per_feature.T)
        out = []
        for row in range(len(X)):
            order = np.argsort(grouped[row])
            picks = [g for g in order[::-1][:top] if grouped[row, g] > 1e-9]
            picks += [g for g in order[:top] if grouped[row, g] < -1e-9]
            attrs = raw_attributes[row] if raw_attributes is not None else {}
            reasons = [
                Reason(
                    self._groups[g],
                    self._describe_group(g, X[row], per_feature[row], attrs),
                    round(float(grouped[row, g]), 4),
                )
                for g in picks
            ]
            out.append(Explanation(fit=int(fit[row]), engagement=int(engagement[row]), reasons=reasons))
        return out

    def _describe_group(self, group: int, x: np.ndarray, contrib: np.ndarray, attrs: dict[str, Any]) -> str:
        members = self._members[group]
        key = self._groups[group]
        if key in TOUCH_PHRASES:
            flag = [m for m in members if self._infos[m].kind == "flag"]
            if flag and x[flag[0]] < NEVER_DAYS:
                return describe(self._infos[flag[0]], float(x[flag[0]]))
            total = [m for m in members if self._infos[m].kind == "count" and self._infos[m].window_days is None]
            if total:
                return describe(self._infos[total[0]], float(x[total[0]]))
        strongest = members[int(np.argmax(np.abs(contrib[members])))]
        info = self._infos[strongest]
        raw = attrs.get(info.attribute) if info.attribute else None
        if info.kind == "attribute" and raw is None and info.attribute in self.spec.categorical_attributes:
            vocab = self.spec.categorical_attributes[info.attribute]
            value = x[strongest]
            raw = vocab[int(value)] if not np.isnan(value) and int(value) < len(vocab) else None
        elif info.kind == "attribute" and raw is None and not np.isnan(x[strongest]):
            raw = float(x[strongest])
        return describe(info, float(x[strongest]), raw)

    # ---- persistence ----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "spec.json").write_text(self.spec.to_json())
        if self.linear is not None:
            (directory / "linear.json").write_text(json.dumps(self.linear.to_dict()))
        else:
            assert self.booster is not None
            (directory / "booster.txt").write_text(self.booster.model_to_string())
        (directory / "calibrator.json").write_text(json.dumps(self.calibrator.to_dict()))
        (directory / "meta.json").write_text(
            json.dumps({"format_version": FORMAT_VERSION, **self.meta}, indent=2, default=str)
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ScoringModel:
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        if int(meta.get("format_version", FORMAT_VERSION)) > FORMAT_VERSION:
            raise ValueError(f"model format {meta['format_version']} is newer than this code ({FORMAT_VERSION})")
        linear_file, booster_file = directory / "linear.json", directory / "booster.txt"
        return cls(
            spec=FeatureSpec.from_json((directory / "spec.json").read_text()),
            booster=lgb.Booster(model_str=booster_file.read_text()) if booster_file.exists() else None,
            calibrator=Calibrator.from_dict(json.loads((directory / "calibrator.json").read_text())),
            meta=meta,
            linear=LinearMargin.from_dict(json.loads(linear_file.read_text())) if linear_file.exists() else None,
        )
