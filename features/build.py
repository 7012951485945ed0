"""One point-in-time feature implementation for training (millions of rows) and serving (one lead).

Both entry points, :func:`build_features` (data frames) and :func:`build_features_from_records`
(plain Python records, for the scoring server), turn their input into the same arrays and call
:func:`_feature_matrix`, so training and serving cannot disagree. Every function takes ``as_of``
explicitly; only touches at or before ``as_of`` count, and every one of them counts (equal touches too).
Attribute values and touch labels are read by the one reading of :mod:`features.spec` (booleans, numbers
written as text, whitespace, case and placeholders), whether they come from CSV, Parquet or JSON.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd

from features.kernel import feature_matrix
from features.spec import (
    OTHER,
    FeatureSpec,
    attribute_number,
    category_key,
    factorize_values,
    normalize_label,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MAX_MICROS = np.iinfo(np.int64).max // 1000  # the last microsecond int64 nanoseconds can hold


class TouchLike(Protocol):
    """What the records path reads of a touch (a :class:`TouchRecord`, or the API's request model)."""

    @property
    def occurred_at(self) -> datetime: ...

    @property
    def touch_type(self) -> str: ...

    @property
    def channel(self) -> str | None: ...


class LeadLike(Protocol):
    """What the records path reads of a lead (a :class:`LeadRecord`, or the API's request model)."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def attributes(self) -> Mapping[str, object]: ...

    @property
    def touchpoints(self) -> Sequence[TouchLike]: ...


@dataclass(frozen=True)
class TouchRecord:
    """One touch of a lead, as the scoring server receives it."""

    occurred_at: datetime
    touch_type: str
    channel: str | None = None


@dataclass(frozen=True)
class LeadRecord:
    """One lead with its touch history, as the scoring server receives it."""

    lead_id: str
    created_at: datetime
    attributes: Mapping[str, object] = field(default_factory=dict)
    touchpoints: Sequence[TouchRecord] = ()


# ---------------------------------------------------------------------------------------------
# Small named steps
# ---------------------------------------------------------------------------------------------
def to_utc_ns(values: pd.Series | pd.Index | Sequence[object] | object) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch in UTC; naive means UTC."""
    parsed = pd.to_datetime(values, utc=True)  # type: ignore[arg-type]
    if isinstance(parsed, pd.Timestamp):
        return np.array([parsed.value], dtype=np.int64)
    series = pd.Series(parsed)
    if series.isna().any():
        raise ValueError("timestamps must not be missing")
    return series.dt.as_unit("ns").to_numpy(dtype="int64")


def datetimes_to_ns(values: Sequence[datetime]) -> np.ndarray:
    """Many datetimes as int64 nanoseconds since the epoch (naive means UTC), exact to the microsecond.

    Times outside int64 nanoseconds (before 1677 or after 2262) are held at those bounds, which every
    range check reads as too early or too late; they never wrap around.
    """
    return _as_ns(_micros(values))


def _micros(values: Sequence[datetime]) -> list[int]:
    """Whole microseconds since the epoch (exact), held within what int64 nanoseconds can hold."""
    try:
        micros = [(v - _EPOCH) // _MICROSECOND for v in values]
    except TypeError:  # a naive datetime among them (UTC)
        micros = [((v if v.tzinfo else v.replace(tzinfo=UTC)) - _EPOCH) // _MICROSECOND for v in values]
    if micros and (min(micros) < -_MAX_MICROS or max(micros) > _MAX_MICROS):
        micros = [min(max(m, -_MAX_MICROS), _MAX_MICROS) for m in micros]
    return micros


def _as_ns(micros: list[int]) -> np.ndarray:
    return np.array(micros, dtype=np.int64) * 1000


def encode_labels(values: pd.Series, vocab: Sequence[str]) -> np.ndarray:
    """Codes of normalised labels in ``vocab``; unknown or missing labels get the ``other`` code."""
    lookup = {label: i for i, label in enumerate(vocab)}
    other = lookup[OTHER]
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.array([lookup.get(normalize_label(u), other) for u in uniques] + [other], dtype=np.int64)
    return mapped[codes]  # code -1 (missing) picks the trailing ``other``


def _sort_touches(lead: np.ndarray, time: np.ndarray, ttype: np.ndarray, chan: np.ndarray) -> np.ndarray:
    """Order touches by lead, time, type and channel (stable, so the result is deterministic)."""
    return np.lexsort((chan, ttype, time, lead))


# ---------------------------------------------------------------------------------------------
# The core
# ---------------------------------------------------------------------------------------------
def _feature_matrix(
    spec: FeatureSpec,
    rows: RowIndex,
    touches: TouchArrays,
    created_ns: np.ndarray,
    attrs: np.ndarray,
) -> np.ndarray:
    """The float32 matrix: engagement features of each row from its lead's touches at or before its
    ``as_of``, then days since created and the attributes (see :func:`features.kernel.feature_matrix`)."""
    windows, channel_windows, high_intent = spec.kernel_windows
    order = _sort_touches(touches.lead, touches.time, touches.type, touches.channel)
    return feature_matrix(
        order,
        touches.lead,
        touches.time,
        touches.type,
        touches.channel,
        rows.n_groups,
        rows.group,
        rows.as_of,
        created_ns,
        np.ascontiguousarray(attrs, dtype=np.float64),
        rows.attr_row,
        windows,
        channel_windows,
        high_intent,
        spec.type_weights,
        len(spec.type_vocab),
        len(spec.channel_vocab),
        float(spec.half_life_days),
        float(spec.velocity_window_days),
        bool(spec.use_touches),
    )


@dataclass(slots=True)  # built per request: plain slots (a frozen init costs twice as much)
class RowIndex:
    """What each output row reads: its lead (``group``, of ``n_groups``), its ``as_of`` (int64 ns) and its
    row of the created times and attributes (``attr_row``)."""

    group: np.ndarray
    as_of: np.ndarray
    attr_row: np.ndarray
    n_groups: int


@dataclass(slots=True)  # built per request: plain slots (a frozen init costs twice as much)
class TouchArrays:
    """Touches as int64 columns: lead (its group), time (ns), type and channel codes; any order."""

    lead: np.ndarray
    time: np.ndarray
    type: np.ndarray
    channel: np.ndarray

    @classmethod
    def empty(cls) -> TouchArrays:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none, none)


def _attribute_features(spec: FeatureSpec, columns: Mapping[str, Sequence[object] | np.ndarray], n: int) -> np.ndarray:
    """Numeric attributes as numbers, categories as codes, each value read by the spec's one reading
    (:func:`features.spec.attribute_number`, :func:`features.spec.category_key`); unknown or missing -> NaN."""
    encoders: list[tuple[str, Callable[[object], float]]] = [
        (name, attribute_number) for name in spec.numeric_attributes
    ]
    encoders += [(name, functools.partial(_category_code, codes)) for name, codes in spec.category_codes.items()]
    if n <= 64:  # a few served leads: one array from Python lists beats an array operation per column
        missing = [math.nan] * n
        cells = [(columns.get(name, missing), encode) for name, encode in encoders]
        rows = [[encode(values[i]) for values, encode in cells] for i in range(n)]
        return np.array(rows, dtype=np.float64).reshape(n, len(encoders))
    out = np.full((n, len(encoders)), np.nan)
    for j, (name, encode) in enumerate(encoders):
        values = columns.get(name)
        if values is not None:
            out[:, j] = _map_values(values, encode)
    return out


def _map_values(values: Sequence[object] | np.ndarray, func: Callable[[object], float]) -> np.ndarray:
    """Apply a scalar encoder to each value; large arrays apply it once per distinct value."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf" and func is attribute_number:
        numbers = values.astype(np.float64)
        return np.where(np.isfinite(numbers), numbers + 0.0, np.nan)  # as attribute_number reads them
    if len(values) <= 64:
        return np.array([func(v) for v in values], dtype=np.float64)
    codes, distinct = factorize_values(values)
    mapped = np.array([func(v) for v in distinct] + [np.nan], dtype=np.float64)
    return mapped[codes]  # code -1 (missing) picks the trailing NaN


def _category_code(lookup: dict[str, int], value: object) -> float:
    """The code of a category value as :func:`category_key` reads it; unknown or missing -> NaN.

    A text is looked up as it is first: vocabulary keys read as themselves (the reading is idempotent), so
    a text that finds itself finds what its key would, and only a miss pays for reading it."""
    if type(value) is str:
        code = lookup.get(value)
        if code is not None:
            return code
    key = category_key(value)
    return math.nan if key is None else lookup.get(key, math.nan)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def build_features(
    leads: pd.DataFrame,
    touchpoints: pd.DataFrame | None,
    as_of: object,
    spec: FeatureSpec,
) -> pd.DataFrame:
    """Point-in-time features for each row of ``leads``.

    Args:
        leads: one row per snapshot: ``lead_id``, ``created_at`` and attribute columns. The same lead may
            appear on several rows (one per snapshot time).
        touchpoints: ``lead_id``, ``occurred_at``, ``touch_type`` and optional ``channel``; may hold touches
            of other leads and touches after ``as_of`` (they are ignored). Every row is a touch, equal rows
            too (re-sent rows are for the data contract to drop, by ``touch_id``). ``None`` for no touch log.
        as_of: one timestamp for every row, or one per row (same length as ``leads``).
        spec: the feature spec (vocabularies, windows, attributes).

    Returns:
        A float32 frame with ``spec.feature_names`` as columns and the index of ``leads``.
    """
    n = len(leads)
    as_of_ns = _as_of_array(as_of, n)
    created_ns = to_utc_ns(leads["created_at"]) if n else np.zeros(0, dtype=np.int64)
    touches = TouchArrays.empty()
    row_group, n_groups = np.zeros(n, dtype=np.int64), 1
    if spec.use_touches:
        lead_ids = pd.Index(leads["lead_id"].astype(str))
        lead_keys = pd.Index(pd.unique(lead_ids))
        row_group, n_groups = lead_keys.get_indexer(lead_ids).astype(np.int64), len(lead_keys)
        if touchpoints is not None and len(touchpoints):
            t_lead = lead_keys.get_indexer(pd.Index(touchpoints["lead_id"].astype(str))).astype(np.int64)
            mine = t_lead >= 0
            channel = (
                touchpoints["channel"][mine] if "channel" in touchpoints.columns else pd.Series([None] * mine.sum())
            )
            touches = TouchArrays(
                lead=t_lead[mine],
                time=to_utc_ns(touchpoints["occurred_at"][mine]),
                type=encode_labels(touchpoints["touch_type"][mine], spec.type_vocab),
                channel=encode_labels(channel, spec.channel_vocab),
            )
    columns = {name: leads[name].to_numpy(dtype=object) for name in spec.attribute_names if name in leads.columns}
    attrs = _attribute_features(spec, columns, n)
    rows = RowIndex(group=row_group, as_of=as_of_ns, attr_row=np.arange(n, dtype=np.int64), n_groups=n_groups)
    matrix = _feature_matrix(spec, rows, touches, created_ns, attrs)
    return pd.DataFrame(matrix, columns=spec.feature_names, index=leads.index)


def build_features_from_records(
    leads: Sequence[LeadLike],
    as_of: datetime | Sequence[datetime],
    spec: FeatureSpec,
) -> np.ndarray:
    """The same features as :func:`build_features`, from plain records (the serving path).

    Args:
        leads: leads with their touches; each lead is its own group, even if two share a ``lead_id``. Every
            touch counts; attribute values read as in training (see :func:`features.spec.category_key` and
            :func:`features.spec.attribute_number`), so JSON ``true`` is CSV ``true``.
        as_of: one time for all leads or one per lead; touches after it are ignored.
        spec: the feature spec.

    Returns:
        A float32 matrix, one row per lead, columns ``spec.feature_names``.
    """
    times = [[as_of]] * len(leads) if isinstance(as_of, datetime) else [[t] for t in as_of]
    return build_features_at(leads, times, spec)


@dataclass(slots=True)  # built per request: plain slots (a frozen init costs twice as much)
class RecordColumns:
    """Leads and their touches as columns: what the records path reads, built once per request.

    Times are int64 nanoseconds since the epoch (UTC). Touches are listed lead by lead; ``touch_lead``
    names each touch's lead (its index in the input); types and channels are codes in the spec's
    vocabularies. ``time_range_ns`` is the earliest and the latest of the created and touch times
    (``(0, 0)`` with neither), for range checks.
    """

    created_ns: np.ndarray
    attributes: Mapping[str, list[object]]
    touch_lead: np.ndarray
    touch_ns: np.ndarray
    touch_type: np.ndarray
    touch_channel: np.ndarray
    time_range_ns: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return len(self.created_ns)


def columns_of_records(leads: Sequence[LeadLike], spec: FeatureSpec) -> RecordColumns:
    """The columns of ``leads`` that ``spec`` reads (touches and the spec's attributes)."""
    touches = [touch for lead in leads for touch in lead.touchpoints]
    n = len(leads)
    micros = _micros([lead.created_at for lead in leads] + [touch.occurred_at for touch in touches])
    times_ns = _as_ns(micros)  # created times, then touch times
    touch_type, touch_channel = _touch_label_codes(touches, spec)
    return RecordColumns(
        created_ns=times_ns[:n],
        attributes={name: [lead.attributes.get(name) for lead in leads] for name in spec.attribute_names},
        touch_lead=np.arange(n, dtype=np.int64).repeat([len(lead.touchpoints) for lead in leads]),
        touch_ns=times_ns[n:],
        touch_type=touch_type,
        touch_channel=touch_channel,
        time_range_ns=(min(micros) * 1000, max(micros) * 1000) if micros else (0, 0),
    )


def build_features_at(leads: Sequence[LeadLike], times: Sequence[Sequence[datetime]], spec: FeatureSpec) -> np.ndarray:
    """Features of each lead at several times (e.g. now and a week ago), reading its touches once.

    Args:
        leads: leads with their touches.
        times: for each lead, the ``as_of`` times to build a row for (the same count for every lead).
        spec: the feature spec.

    Returns:
        A float32 matrix of ``len(leads) * k`` rows, lead-major: lead 0 at each of its times, then lead 1, ...
    """
    k = len(times[0]) if len(leads) else 1
    if any(len(t) != k for t in times):
        raise ValueError("every lead needs the same number of as_of times")
    as_of_ns = datetimes_to_ns([t for per_lead in times for t in per_lead]).reshape(len(leads), k)
    return build_features_from_columns(columns_of_records(leads, spec), as_of_ns, spec)


def build_features_from_columns(columns: RecordColumns, as_of_ns: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Features of each lead of ``columns`` at each of its ``as_of`` times.

    Args:
        columns: the leads and touches, see :func:`columns_of_records`.
        as_of_ns: ``(leads, k)`` int64 nanoseconds: the times to build rows for, per lead.
        spec: the feature spec.

    Returns:
        A float32 matrix of ``leads * k`` rows, lead-major (lead 0 at each of its times, then lead 1, ...).
    """
    n, k = as_of_ns.shape
    if n != len(columns):
        raise ValueError(f"as_of has {n} rows for {len(columns)} leads")
    lead_of_row = np.arange(n * k, dtype=np.int64) // k
    rows = RowIndex(group=lead_of_row, as_of=as_of_ns.reshape(-1), attr_row=lead_of_row, n_groups=n)
    touches = TouchArrays(
        lead=columns.touch_lead,
        time=columns.touch_ns,
        type=columns.touch_type,
        channel=columns.touch_channel,
    )
    attrs = _attribute_features(spec, columns.attributes, n)
    return _feature_matrix(spec, rows, touches, columns.created_ns, attrs)


LABEL_MEMO_LIMIT = 10_000  # raw labels remembered per vocabulary; free text past it is coded each time


def _touch_label_codes(touches: Sequence[TouchLike], spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Type and channel codes of the touches in the spec's vocabularies (unknown or missing: ``other``), as
    :func:`encode_labels` gives them; through memos of raw labels shared by the server's threads.

    The memos only grow (to :data:`LABEL_MEMO_LIMIT` labels each) and are never cleared: a reader in
    another thread never loses a label it has just looked up, so no lock is needed (a dict's get and set
    are atomic in CPython).
    """
    types, channels = _raw_lookup(spec.type_vocab), _raw_lookup(spec.channel_vocab)
    try:  # the usual case: every label seen before
        return (
            np.array([types[touch.touch_type] for touch in touches], dtype=np.int64),
            np.array([channels[touch.channel] for touch in touches], dtype=np.int64),
        )
    except KeyError:
        return (
            np.array([_memo_code(types, t.touch_type, spec.type_vocab) for t in touches], dtype=np.int64),
            np.array([_memo_code(channels, t.channel, spec.channel_vocab) for t in touches], dtype=np.int64),
        )


def _memo_code(memo: dict[str | None, int], value: str | None, vocab: tuple[str, ...]) -> int:
    code = memo.get(value)
    if code is None:
        code = _code_of(value, vocab)
        if len(memo) < LABEL_MEMO_LIMIT:
            memo[value] = code
    return code


@functools.lru_cache(maxsize=64)
def _raw_lookup(vocab: tuple[str, ...]) -> dict[str | None, int]:
    """Memo of raw label -> code for one vocabulary (the scoring server sees the same labels again and again)."""
    return {}


def _code_of(value: str | None, vocab: tuple[str, ...]) -> int:
    lookup = _lookup(vocab)
    return lookup[OTHER] if value is None else lookup.get(normalize_label(value), lookup[OTHER])


@functools.lru_cache(maxsize=64)
def _lookup(vocab: tuple[str, ...]) -> dict[str, int]:
    return {label: i for i, label in enumerate(vocab)}


def _as_of_array(as_of: object, n: int) -> np.ndarray:
    if isinstance(as_of, str | datetime | pd.Timestamp | np.datetime64):
        return np.full(n, to_utc_ns(as_of)[0], dtype=np.int64)
    values = to_utc_ns(as_of)
    if len(values) != n:
        raise ValueError(f"as_of has {len(values)} values for {n} lead rows")
    return values
