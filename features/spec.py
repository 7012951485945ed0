"""The declarative, versioned feature spec saved with every model."""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

SPEC_FORMAT_VERSION = 1
OTHER = "other"

# Canonical touch types: marketing touches first, then sales touches.
DEFAULT_TOUCH_TYPES: tuple[str, ...] = (
    "ad_impression",
    "ad_click",
    "social_engagement",
    "email_open",
    "email_click",
    "web_visit",
    "pricing_page",
    "content_download",
    "webinar",
    "event",
    "form_fill",
    "demo_request",
    "call",
    "meeting",
    "demo",
    "proposal",
)
DEFAULT_HIGH_INTENT: tuple[str, ...] = ("demo_request", "pricing_page", "form_fill")
DEFAULT_TOUCH_WEIGHTS: dict[str, float] = {
    "ad_impression": 0.1,
    "ad_click": 0.5,
    "social_engagement": 0.3,
    "email_open": 0.3,
    "email_click": 1.0,
    "web_visit": 0.5,
    "pricing_page": 3.0,
    "content_download": 2.0,
    "webinar": 3.0,
    "event": 3.0,
    "form_fill": 4.0,
    "demo_request": 8.0,
    "call": 2.0,
    "meeting": 5.0,
    "demo": 8.0,
    "proposal": 10.0,
    OTHER: 0.5,
}

Group = Literal["fit", "engagement"]


@dataclass(frozen=True)
class FeatureInfo:
    """What one feature column means, for reasons and for the fit/engagement split."""

    name: str
    group: Group
    kind: str  # count | channel_count | total | recency | age | decayed | velocity | distinct | flag | attribute
    touch_type: str | None = None
    channel: str | None = None
    window_days: int | None = None
    attribute: str | None = None


@functools.lru_cache(maxsize=8192)
def _normalize_text(text: str) -> str:
    return _NON_WORD.sub("_", text.strip().lower()).strip("_") or OTHER


_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize_label(value: object) -> str:
    """Normalise a touch type or channel label: lower case, words joined by underscores."""
    return _normalize_text(value if isinstance(value, str) else str(value))


def is_missing(value: object) -> bool:
    """None, NaN and pandas' NA are missing values."""
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def category_key(value: object) -> str | None:
    """Category values compare as strings, so ``True``/"True" and 5/5.0/"5" match; missing -> None."""
    if is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return category_key(value.item())
    return str(value)


def slug(name: str) -> str:
    """A feature-name-safe version of an attribute column name."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "col"


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn leads and touches into the model's feature columns.

    Attributes:
        touch_types: canonical touch types; any other type counts in the ``other`` bucket.
        channels: known channels (learned from training data); others count as ``other``.
        type_windows_days: windows for counts per touch type (``None`` = all time).
        channel_windows_days: windows for counts per channel.
        half_life_days: half-life of the exponentially decayed engagement score.
        velocity_window_days: velocity compares this many recent days with the same span before.
        high_intent: touch types that get an "ever" flag and a "days since" feature.
        touch_weights: weight of each touch type in the decayed engagement score.
        numeric_attributes: lead attribute columns used as numbers.
        categorical_attributes: lead attribute columns used as categories, with their known values.
        use_touches: False for flat exports without a touch log (attributes only).
        excluded_columns: columns deliberately left out (e.g. leaky columns of a flat export).
    """

    version: int = SPEC_FORMAT_VERSION
    touch_types: tuple[str, ...] = DEFAULT_TOUCH_TYPES
    channels: tuple[str, ...] = ()
    type_windows_days: tuple[int | None, ...] = (7, 30, 90, None)
    channel_windows_days: tuple[int | None, ...] = (30, None)
    half_life_days: float = 14.0
    velocity_window_days: int = 30
    high_intent: tuple[str, ...] = DEFAULT_HIGH_INTENT
    touch_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOUCH_WEIGHTS))
    numeric_attributes: tuple[str, ...] = ()
    categorical_attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    use_touches: bool = True
    excluded_columns: tuple[str, ...] = ()

    # ---- derived vocabularies -------------------------------------------------------------
    @functools.cached_property
    def type_vocab(self) -> tuple[str, ...]:
        """Touch types with the trailing ``other`` bucket."""
        return (*self.touch_types, OTHER)

    @functools.cached_property
    def channel_vocab(self) -> tuple[str, ...]:
        return (*self.channels, OTHER)

    @functools.cached_property
    def type_weights(self) -> np.ndarray:
        """Weight of each touch type of the vocabulary (for the decayed engagement feature)."""
        return np.array(
            [self.touch_weights.get(t, self.touch_weights.get(OTHER, 0.5)) for t in self.type_vocab],
            dtype=np.float64,
        )

    @functools.cached_property
    def attribute_names(self) -> tuple[str, ...]:
        """The lead columns the features read: numeric attributes, then categorical ones."""
        return (*self.numeric_attributes, *self.categorical_attributes)

    @functools.cached_property
    def category_codes(self) -> dict[str, dict[str, int]]:
        """The code of each known value of each categorical attribute (its position in the vocabulary)."""
        return {name: {v: i for i, v in enumerate(vocab)} for name, vocab in self.categorical_attributes.items()}

    @functools.cached_property
    def kernel_windows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Type windows, channel windows (days; ``-1`` = all time) and high-intent type codes (``-1``: not
        in the vocabulary), as the feature kernel reads them."""
        return (
            np.array([-1.0 if w is None else float(w) for w in self.type_windows_days]),
            np.array([-1.0 if w is None else float(w) for w in self.channel_windows_days]),
            np.array([self.type_vocab.index(t) if t in self.type_vocab else -1 for t in self.high_intent], np.int64),
        )

    # ---- columns --------------------------------------------------------------------------
    def feature_infos(self) -> list[FeatureInfo]:
        """Every feature column in model order, with its meaning."""
        infos: list[FeatureInfo] = []
        if self.use_touches:
            for w in self.type_windows_days:
                suffix = _window_suffix(w)
                for t in self.type_vocab:
                    infos.append(FeatureInfo(f"n_{t}_{suffix}", "engagement", "count", touch_type=t, window_days=w))
                infos.append(FeatureInfo(f"n_touches_{suffix}", "engagement", "total", window_days=w))
            for w in self.channel_windows_days:
                suffix = _window_suffix(w)
                for c in self.channel_vocab:
                    infos.append(
                        FeatureInfo(f"n_ch_{c}_{suffix}", "engagement", "channel_count", channel=c, window_days=w)
                    )
            infos += [
                FeatureInfo("days_since_last_touch", "engagement", "recency"),
                FeatureInfo("days_since_first_touch", "engagement", "recency"),
                FeatureInfo("engagement_decayed", "engagement", "decayed"),
                FeatureInfo(f"velocity_{self.velocity_window_days}d", "engagement", "velocity"),
                FeatureInfo("n_distinct_channels", "engagement", "distinct"),
            ]
            for t in self.high_intent:
                infos.append(FeatureInfo(f"days_since_{t}", "engagement", "flag", touch_type=t))
        infos.append(FeatureInfo("days_since_created", "fit", "age"))
        for a in self.numeric_attributes:
            infos.append(FeatureInfo(f"attr_{slug(a)}", "fit", "attribute", attribute=a))
        for a in self.categorical_attributes:
            infos.append(FeatureInfo(f"attr_{slug(a)}", "fit", "attribute", attribute=a))
        return infos

    @property
    def feature_names(self) -> list[str]:
        return [i.name for i in self.feature_infos()]

    @property
    def categorical_feature_names(self) -> list[str]:
        return [f"attr_{slug(a)}" for a in self.categorical_attributes]

    # ---- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["categorical_attributes"] = {k: list(v) for k, v in self.categorical_attributes.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)  # key order is column order: never sort

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        version = int(data.get("version", SPEC_FORMAT_VERSION))
        if version > SPEC_FORMAT_VERSION:
            raise ValueError(f"feature spec version {version} is newer than this code ({SPEC_FORMAT_VERSION})")
        tuples = (
            "touch_types",
            "channels",
            "type_windows_days",
            "channel_windows_days",
            "high_intent",
            "numeric_attributes",
            "excluded_columns",
        )
        kwargs = dict(data)
        for key in tuples:
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        kwargs["categorical_attributes"] = {
            k: tuple(v) for k, v in dict(kwargs.get("categorical_attributes", {})).items()
        }
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls.from_dict(json.loads(text))


def _window_suffix(window: int | None) -> str:
    return "all" if window is None else f"{window}d"


RESERVED_LEAD_COLUMNS = ("lead_id", "created_at")


def infer_spec(
    leads: pd.DataFrame,
    touchpoints: pd.DataFrame | None,
    *,
    exclude_columns: tuple[str, ...] = (),
    max_categories: int = 50,
    min_category_count: int = 5,
    max_channels: int = 12,
    **config: Any,
) -> FeatureSpec:
    """Learn the data-dependent parts of a spec (attribute kinds, category and channel vocabularies).

    Args:
        leads: the leads table (``lead_id``, ``created_at``, attributes).
        touchpoints: the touch log, or ``None`` for attribute-only models.
        exclude_columns: attribute columns to leave out; recorded in the spec.
        max_categories: most frequent values kept per categorical attribute.
        min_category_count: rarer values fall into "unknown".
        max_channels: most frequent channels kept; the rest count as ``other``.
        **config: any other :class:`FeatureSpec` field (windows, half-life, ...).

    Returns:
        A spec whose vocabularies come from ``leads`` and ``touchpoints``.
    """
    numeric: list[str] = []
    categorical: dict[str, tuple[str, ...]] = {}
    for col in leads.columns:
        if col in RESERVED_LEAD_COLUMNS or col in exclude_columns:
            continue
        series = leads[col]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            raw = series.value_counts(dropna=True)
            counts = pd.Series(raw.to_numpy(), index=[category_key(v) for v in raw.index]).groupby(level=0).sum()
            counts = counts[counts >= min_category_count].sort_values(ascending=False, kind="stable")
            ordered = sorted(counts.index[:max_categories].tolist(), key=lambda v: (-counts[v], v))
            categorical[col] = tuple(ordered)
        else:
            numeric.append(col)
    channels: tuple[str, ...] = ()
    use_touches = touchpoints is not None
    if touchpoints is not None and "channel" in touchpoints.columns and len(touchpoints):
        raw = touchpoints["channel"].value_counts(dropna=True)
        counts = pd.Series(raw.to_numpy(), index=[normalize_label(v) for v in raw.index]).groupby(level=0).sum()
        counts = counts[counts.index != OTHER].sort_values(ascending=False, kind="stable")
        channels = tuple(sorted(counts.index[:max_channels].tolist()))
    return FeatureSpec(
        channels=channels,
        numeric_attributes=tuple(numeric),
        categorical_attributes=categorical,
        use_touches=use_touches,
        excluded_columns=tuple(exclude_columns),
        **config,
    )
