"""The declarative, versioned feature spec saved with every model, and the one reading of every value.

Attribute values and touch labels are read here, and only here, for training (CSV, Parquet) and serving
(JSON) alike: :func:`category_key`, :func:`attribute_number`, :func:`reads_as_numbers`, :func:`normalize_label`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Sequence
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


# ---- one reading of every value ---------------------------------------------------------------
# Training (CSV, Parquet) and serving (JSON) read attribute values and touch labels through these functions
# only, so a value means the same wherever it comes from. Every reading is idempotent: reading a result
# again gives it back, so keys already read (a vocabulary) can be looked up before reading a raw value.

PLACEHOLDERS = frozenset({"select", "n/a", "na", "none", "null", "-", "unknown"})
"""Texts that mean "no value" (compared after whitespace is collapsed and case folded)."""

BOOLEAN_KEYS = ("false", "true")


@functools.lru_cache(maxsize=8192)
def _normalize_text(text: str) -> str:
    words = _NON_WORD.sub("_", text.strip().lower()).strip("_")
    return OTHER if not words or " ".join(text.split()).casefold() in PLACEHOLDERS else words


_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize_label(value: object) -> str:
    """Normalise a touch type or channel label: lower case, words joined by underscores; blank and
    placeholders (``Select``, ``n/a``, ...) are ``other``, as a missing label is."""
    return _normalize_text(value if isinstance(value, str) else str(value))


def is_missing(value: object) -> bool:
    """None, NaN and pandas' NA are missing values."""
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


@functools.lru_cache(maxsize=16384)
def _text_key(text: str) -> str | None:
    """The key of a text value (see :func:`category_key`); memoised, since the same few texts come again."""
    folded = " ".join(text.split()).casefold()
    if not folded or folded in PLACEHOLDERS:
        return None
    if folded in BOOLEAN_KEYS:
        return folded
    number = _parse_number(folded)
    return folded if number is None else _number_key(number)


def _parse_number(text: str) -> float | None:
    """The number a text spells (Python's float syntax without digit separators), else None."""
    if "_" in text:
        return None  # "1_10" is a label, not 110
    try:
        return float(text)
    except ValueError:
        return None


def _number_key(number: float) -> str | None:
    """5.0 -> "5", 0.25 -> "0.25" (shortest exact form), NaN -> None, infinities -> "inf" / "-inf"."""
    if math.isnan(number):
        return None
    if number.is_integer():
        return str(int(number))
    return repr(number)


def category_key(value: object) -> str | None:
    """How a categorical attribute value reads, from CSV, Parquet or JSON alike.

    Missing (None, NaN, NA), blank and placeholder texts (:data:`PLACEHOLDERS`) -> None. Booleans and the
    texts ``true``/``false`` in any case -> "true"/"false". Numbers and texts that spell one -> the number
    written shortest (5, 5.0, "5", " 5.0 " -> "5"; 0.50 -> "0.5"). Any other text -> its words joined by
    one space, case folded (" Software " -> "software"). Idempotent: ``category_key(category_key(v))``
    is ``category_key(v)``.
    """
    if type(value) is str:
        return _text_key(value)
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, np.generic):
        return category_key(value.item())
    if isinstance(value, int | float):
        try:
            return _number_key(float(value))
        except OverflowError:  # an int beyond float: its digits
            return str(value)
    return _text_key(str(value))


@functools.lru_cache(maxsize=16384)
def _text_number(text: str) -> float:
    key = _text_key(text)
    if key is None:
        return math.nan
    if key in BOOLEAN_KEYS:
        return float(key == "true")
    number = _parse_number(key)
    return number + 0.0 if number is not None and math.isfinite(number) else math.nan


def attribute_number(value: object) -> float:
    """How a numeric attribute value reads, from CSV, Parquet or JSON alike.

    Numbers -> themselves as float (-0.0 as 0.0); booleans and the texts ``true``/``false`` -> 1.0/0.0;
    texts that spell a number (whitespace allowed: " 3 " -> 3.0) -> that number. Missing, blank, placeholder,
    other texts and infinities -> NaN. Agrees with :func:`category_key`: a value reads as the number its key
    spells.
    """
    if type(value) is float:  # the usual case, first
        return value + 0.0 if math.isfinite(value) else math.nan  # + 0.0: -0.0 reads 0.0, as "-0" does
    if type(value) is str:
        return _text_number(value)
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    if is_missing(value):
        return math.nan
    if isinstance(value, np.generic):
        return attribute_number(value.item())
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return math.nan
        return number + 0.0 if math.isfinite(number) else math.nan
    return _text_number(str(value))


def number_evidence(values: Iterable[object]) -> tuple[bool, bool]:
    """What ``values`` show about their column's reading: ``(numbers, other)``, whether any value is a number
    (or a text that spells one), and whether any is neither a number, a boolean, missing nor a placeholder.
    The scan stops at the first other value (``numbers`` then says only what came before it; it no longer
    matters). The evidence of parts of a column combines by ``or`` into the whole column's reading, which
    is numeric when ``numbers and not other`` (:func:`reads_as_numbers`); used to decide one column's reading
    across partitions."""
    numbers = False
    for value in values:
        key = category_key(value)
        if key is None or key in BOOLEAN_KEYS:
            continue
        if _parse_number(key) is None:
            return numbers, True
        numbers = True
    return numbers, False


def reads_as_numbers(values: Iterable[object]) -> bool:
    """Whether an attribute column of ``values`` is numeric: at least one value is a number (or a text that
    spells one) and every other value is missing, a placeholder or a boolean (read as 1/0). A column of
    booleans alone, or with any other text, is categorical."""
    numbers, other = number_evidence(values)
    return numbers and not other


def factorize_values(values: pd.Series | np.ndarray | Sequence[object]) -> tuple[np.ndarray, list[object]]:
    """Codes of ``values`` in their distinct values, and those values (missing: code -1), as ``pd.factorize``
    gives them, except that booleans stay apart from the numbers 1 and 0: pandas takes ``True`` and ``1``
    for one value, the readings do not ("true" and "1")."""
    if isinstance(values, pd.Series):
        series = values
    else:
        series = pd.Series(values if isinstance(values, np.ndarray) else list(values), dtype=object)
    if pd.api.types.infer_dtype(series, skipna=True) not in ("mixed", "mixed-integer"):  # no bools among others
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        return codes.astype(np.int64), list(uniques)
    seen: dict[tuple[bool, object], int] = {}
    distinct: list[object] = []
    out = np.full(len(series), -1, dtype=np.int64)
    for i, value in enumerate(series.tolist()):
        if not is_missing(value):
            tag = (isinstance(value, bool | np.bool_), value)
            if tag not in seen:
                seen[tag] = len(distinct)
                distinct.append(value)
            out[i] = seen[tag]
    return out, distinct


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
    def attribute_types(self) -> dict[str, bool]:
        """Per attribute column the features read, whether it is numeric: the reading a table to be scored
        is typed by (``training.data.load_crm_data(attribute_types=...)``), whatever its own values show."""
        return {**{c: True for c in self.numeric_attributes}, **{c: False for c in self.categorical_attributes}}

    @functools.cached_property
    def attribute_names(self) -> tuple[str, ...]:
        """The lead columns the features read: numeric attributes, then categorical ones."""
        return (*self.numeric_attributes, *self.categorical_attributes)

    @functools.cached_property
    def category_codes(self) -> dict[str, dict[str, int]]:
        """The code of each known value of each categorical attribute (its position in the vocabulary), by
        the value and by its :func:`category_key`. Vocabularies learned by this code are keys already; those
        of older specs may not be ("True", " Software"), and their keys then find them too."""
        return {name: _codes_of(vocab) for name, vocab in self.categorical_attributes.items()}

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


def _codes_of(vocab: tuple[str, ...]) -> dict[str, int]:
    """Value -> code of one categorical column: each vocabulary value and its key; in a Yes/No column (keys
    ``yes`` and ``no``, no ``true``/``false``) a boolean (JSON ``true``, a CSV ``TRUE``) finds yes or no."""
    codes = {value: i for i, value in enumerate(vocab)}
    for i, value in enumerate(vocab):
        key = category_key(value)
        if key is not None:
            codes.setdefault(key, i)  # an exact value keeps its own code; the first value of a key wins
    if "yes" in codes and "no" in codes and "true" not in codes and "false" not in codes:
        codes["true"], codes["false"] = codes["yes"], codes["no"]
    return codes


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

    Values are read as the spec reads them everywhere: a column is numeric when :func:`reads_as_numbers`
    (or its dtype) says so, and a categorical vocabulary holds :func:`category_key` keys, so " Software "
    and "software" are one category and placeholders are no category at all.

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
    counts = spec_counts(leads, touchpoints, exclude_columns=exclude_columns)
    return spec_from_counts(
        counts,
        exclude_columns=exclude_columns,
        max_categories=max_categories,
        min_category_count=min_category_count,
        max_channels=max_channels,
        **config,
    )


@dataclass
class SpecCounts:
    """What :func:`infer_spec` learns from, as sums: counts of one part of the data add up with another's
    (:meth:`merge`), so a spec can be learnt partition by partition and equal the one learnt from the whole.

    Attributes:
        columns: the attribute columns, in the leads table's order.
        numeric_dtype: per column, whether its dtype is numeric (not boolean) in every part.
        has_number / has_other_text: per column, whether some value reads as a number / some value is text
            that neither reads as a number, a boolean nor a placeholder (see :func:`reads_as_numbers`).
        categories: per column, rows per :func:`category_key` (missing values not counted).
        channels: touches per :func:`normalize_label` of their channel; ``has_touches``: a touch log was given.
    """

    columns: list[str] = field(default_factory=list)
    numeric_dtype: dict[str, bool] = field(default_factory=dict)
    has_number: dict[str, bool] = field(default_factory=dict)
    has_other_text: dict[str, bool] = field(default_factory=dict)
    categories: dict[str, dict[str, int]] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    has_touches: bool = False

    def merge(self, other: SpecCounts) -> SpecCounts:
        """The counts of both parts (columns of either, in this part's order first)."""
        out = SpecCounts(columns=list(dict.fromkeys([*self.columns, *other.columns])))
        for col in out.columns:
            mine, theirs = col in self.columns, col in other.columns
            out.numeric_dtype[col] = (not mine or self.numeric_dtype[col]) and (not theirs or other.numeric_dtype[col])
            out.has_number[col] = self.has_number.get(col, False) or other.has_number.get(col, False)
            out.has_other_text[col] = self.has_other_text.get(col, False) or other.has_other_text.get(col, False)
            out.categories[col] = _add_counts(self.categories.get(col, {}), other.categories.get(col, {}))
        out.channels = _add_counts(self.channels, other.channels)
        out.has_touches = self.has_touches or other.has_touches
        return out


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return out


def spec_counts(
    leads: pd.DataFrame, touchpoints: pd.DataFrame | None, *, exclude_columns: tuple[str, ...] = ()
) -> SpecCounts:
    """The :class:`SpecCounts` of one part of the data (or of all of it)."""
    counts = SpecCounts(has_touches=touchpoints is not None)
    for col in leads.columns:
        if col in RESERVED_LEAD_COLUMNS or col in exclude_columns:
            continue
        series = leads[col]
        counts.columns.append(col)
        counts.numeric_dtype[col] = bool(
            pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        )
        if counts.numeric_dtype[col]:  # numeric whatever its values: nothing else to count
            counts.has_number[col], counts.has_other_text[col], counts.categories[col] = False, False, {}
            continue
        codes, distinct = factorize_values(series)
        keys = [category_key(v) for v in distinct]
        number = other = False
        for key in keys:
            if key is None or key in BOOLEAN_KEYS:
                continue
            if _parse_number(key) is None:
                other = True
            else:
                number = True
        counts.has_number[col], counts.has_other_text[col] = number, other
        per_value = np.bincount(codes[codes >= 0], minlength=len(distinct))
        by_key: dict[str, int] = {}
        for key, n in zip(keys, per_value.tolist(), strict=True):
            if key is not None:
                by_key[key] = by_key.get(key, 0) + n
        counts.categories[col] = by_key
    if touchpoints is not None and "channel" in touchpoints.columns and len(touchpoints):
        raw = touchpoints["channel"].value_counts(dropna=True)
        for label, n in zip(raw.index, raw.to_numpy().tolist(), strict=True):
            key = normalize_label(label)
            counts.channels[key] = counts.channels.get(key, 0) + int(n)
    return counts


def spec_from_counts(
    counts: SpecCounts,
    *,
    exclude_columns: tuple[str, ...] = (),
    max_categories: int = 50,
    min_category_count: int = 5,
    max_channels: int = 12,
    **config: Any,
) -> FeatureSpec:
    """The spec :func:`infer_spec` learns, from the counts (same arguments): a column is numeric when its dtype
    is, or when some value reads as a number and none is other text; a vocabulary keeps the
    ``max_categories`` most frequent keys seen at least ``min_category_count`` times (ties by key), most
    frequent first; the ``max_channels`` most frequent channels other than ``other`` are kept, by name."""
    numeric: list[str] = []
    categorical: dict[str, tuple[str, ...]] = {}
    for col in counts.columns:
        if counts.numeric_dtype[col] or (counts.has_number[col] and not counts.has_other_text[col]):
            numeric.append(col)
            continue
        frequent = [(key, n) for key, n in counts.categories[col].items() if n >= min_category_count]
        frequent.sort(key=lambda item: (-item[1], item[0]))
        categorical[col] = tuple(key for key, _ in frequent[:max_categories])
    kept = sorted(
        ((key, n) for key, n in counts.channels.items() if key != OTHER), key=lambda item: (-item[1], item[0])
    )
    channels = tuple(sorted(key for key, _ in kept[:max_channels]))
    use_touches = counts.has_touches
    return FeatureSpec(
        channels=channels,
        numeric_attributes=tuple(numeric),
        categorical_attributes=categorical,
        use_touches=use_touches,
        excluded_columns=tuple(exclude_columns),
        **config,
    )
