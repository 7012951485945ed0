"""The two baselines every model is compared with on the same split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from features.spec import FeatureSpec, slug
from models.calibration import Calibrator

# Points per touch of the kind marketing teams assign by hand.
TOUCH_POINTS = {
    "proposal": 30,
    "demo_request": 25,
    "demo": 20,
    "meeting": 15,
    "form_fill": 10,
    "pricing_page": 10,
    "webinar": 8,
    "event": 8,
    "call": 5,
    "content_download": 5,
    "email_click": 3,
    "ad_click": 2,
    "web_visit": 1,
    "email_open": 1,
    "social_engagement": 1,
}
MAX_TOUCHES_COUNTED = 3  # per type, as hand-made scoring sheets cap repeated touches
INACTIVITY_PENALTY = -10  # no touch in the last 30 days


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def logistic_baseline(spec: FeatureSpec, seed: int) -> Pipeline:
    """Logistic regression: log-scaled, standardised numbers and one-hot categories."""
    names = spec.feature_names
    cat = [names.index(c) for c in spec.categorical_feature_names]
    num = [i for i in range(len(names)) if i not in cat]
    numeric = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        FunctionTransformer(_signed_log1p),
        StandardScaler(),
    )
    categorical = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=-1, keep_empty_features=True),
        OneHotEncoder(handle_unknown="ignore"),
    )
    pre = ColumnTransformer([("num", numeric, num), ("cat", categorical, cat)])
    return Pipeline([("pre", pre), ("lr", LogisticRegression(C=0.5, max_iter=2000, random_state=seed))])


@dataclass
class RulesBaseline:
    """A rule-based points score: points per touch type, per fit attribute value, minus inactivity.

    Attribute points come from each value's win rate in the training window (as a marketing team would
    read them off a report), rounded to whole points; a sigmoid fitted on the calibration window turns
    points into a probability so that calibration metrics are comparable.
    """

    spec: FeatureSpec
    attribute_points_: dict[str, np.ndarray] = field(default_factory=dict)
    calibrator_: Calibrator | None = None

    def points(self, X: np.ndarray) -> np.ndarray:
        names = self.spec.feature_names
        total = np.zeros(len(X))
        if self.spec.use_touches:
            for touch, pts in TOUCH_POINTS.items():
                col = f"n_{touch}_all"
                if col in names:
                    total += pts * np.minimum(np.nan_to_num(X[:, names.index(col)]), MAX_TOUCHES_COUNTED)
            recent = X[:, names.index("n_touches_30d")] if "n_touches_30d" in names else np.ones(len(X))
            total += np.where(recent > 0, 0, INACTIVITY_PENALTY)
        for col, table in self.attribute_points_.items():
            codes = X[:, names.index(col)]
            known = ~np.isnan(codes)
            total[known] += table[codes[known].astype(int)]
        return total

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_cal: np.ndarray,
        y_cal: np.ndarray,
        weight: np.ndarray | None = None,
        weight_cal: np.ndarray | None = None,
    ) -> RulesBaseline:
        """Points from the training window (rows weighted, e.g. one per lead), a sigmoid from the calibration one."""
        names = self.spec.feature_names
        w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
        base = max(float(np.average(y, weights=w)), 1e-6)
        for attr, vocab in self.spec.categorical_attributes.items():
            col = f"attr_{slug(attr)}"
            codes = X[:, names.index(col)]
            table = np.zeros(len(vocab))
            for i in range(len(vocab)):
                sel = codes == i
                if sel.sum() >= 30:
                    mass, wins = w[sel].sum(), (w[sel] * y[sel]).sum()
                    rate = (wins + base * 10) / (mass + 10)  # shrunk towards the base rate
                    table[i] = np.clip(np.round(10 * np.log(rate / base)), -15, 15)
            self.attribute_points_[col] = table
        self.calibrator_ = Calibrator("sigmoid").fit(self.points(X_cal) / 10.0, y_cal, weight_cal)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        assert self.calibrator_ is not None, "fit first"
        return self.calibrator_.predict(self.points(X) / 10.0)
