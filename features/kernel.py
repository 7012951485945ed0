"""The compiled core of the features: one pass over each row's known touches, into the final matrix.

Training (millions of snapshot rows) and serving (one lead, now and a week ago) both come here through
:func:`features.build._feature_matrix`. Written as plain loops and compiled by numba: vectorised numpy
needs ~40 array operations whose fixed cost dominates for one lead, and the same loops are 4x faster
than numpy on training batches too. One call groups the touches, computes each row and writes it into
the float32 matrix (no float64 copy of the whole). Compiled on the first call of a process (a few seconds;
the scoring server does it while loading its model). The compiled code is kept on disk only where numba is
told to keep it (``NUMBA_CACHE_DIR``, which the ``leadscore`` command sets to ``LEADSCORE_COMPILE_CACHE_DIR``,
by default ``numba-cache`` under the home), so that later processes load it instead; never in the package.
"""

from __future__ import annotations

import numba
import numpy as np

NS_PER_DAY = 86_400 * 10**9
# numba's own setting NUMBA_CACHE_DIR (read by numba when imported): keep compiled code there; unset, compile
# in memory only, so nothing is ever written inside the package
KEEP_COMPILED = bool(getattr(numba.config, "CACHE_DIR", ""))
NEVER_DAYS = 10_000.0  # "days since" a thing that never happened: long ago, so recency stays monotone


@numba.njit(nogil=True, cache=KEEP_COMPILED)
def feature_matrix(
    order: np.ndarray,
    t_lead: np.ndarray,
    t_time: np.ndarray,
    t_type: np.ndarray,
    t_chan: np.ndarray,
    n_groups: int,
    row_group: np.ndarray,
    as_of: np.ndarray,
    created: np.ndarray,
    attrs: np.ndarray,
    attr_row: np.ndarray,
    type_windows: np.ndarray,
    channel_windows: np.ndarray,
    high_intent: np.ndarray,
    type_weights: np.ndarray,
    n_types: int,
    n_channels: int,
    half_life_days: float,
    velocity_days: float,
    use_touches: bool,
) -> np.ndarray:
    """The float32 feature matrix, columns in :meth:`FeatureSpec.feature_infos` order.

    Touches (lead ``t_lead``, time, type and channel codes) are taken in ``order`` (by lead, time, type,
    channel) and grouped by :func:`group_touches`; every touch counts, equal ones too. Row i reads the
    touches of lead ``g = row_group[i]`` up to ``as_of[i]`` (the point-in-time rule), and its days since
    created and attributes from row ``attr_row[i]`` of ``created`` and ``attrs``. Windows are in days;
    ``-1`` means all time.

    Columns: when ``use_touches``, per type window the count of each type and their total; per channel
    window the count of each channel; days since the newest and the oldest touch, the decayed weighted
    sum, the velocity (last window minus the one before) and the number of distinct channels; days since
    the newest touch of each high-intent type (code ``-1``: a type the vocabulary lacks). Then days since
    created, then the attributes. Each row is computed in float64 and stored as float32.
    """
    n = row_group.shape[0]
    n_tw = type_windows.shape[0]
    n_cw = channel_windows.shape[0]
    channel_at = n_tw * (n_types + 1)
    misc_at = channel_at + n_cw * n_channels
    n_touch = misc_at + 5 + high_intent.shape[0] if use_touches else 0
    n_attr = attrs.shape[1]
    out = np.empty((n, n_touch + 1 + n_attr), dtype=np.float32)
    time, ttype, chan, group_start, group_end = group_touches(order, t_lead, t_time, t_type, t_chan, n_groups)
    block = np.zeros(n_touch)
    seen = np.zeros(n_channels, dtype=np.bool_)
    newest = np.empty(n_types)
    for i in range(n):
        if use_touches:
            g = row_group[i]
            limit = as_of[i]
            block[:] = 0.0
            seen[:] = False
            newest[:] = NEVER_DAYS
            since_last = NEVER_DAYS
            since_first = NEVER_DAYS
            decayed = 0.0
            recent = 0.0
            before = 0.0
            distinct = 0.0
            for j in range(group_start[g], group_end[g]):
                if time[j] > limit:
                    break  # sorted by time: every later touch is unknown at as_of too
                age = float(limit - time[j]) / NS_PER_DAY
                t = ttype[j]
                c = chan[j]
                for w in range(n_tw):
                    if type_windows[w] < 0 or age <= type_windows[w]:
                        block[w * (n_types + 1) + t] += 1.0
                        block[w * (n_types + 1) + n_types] += 1.0
                for w in range(n_cw):
                    if channel_windows[w] < 0 or age <= channel_windows[w]:
                        block[channel_at + w * n_channels + c] += 1.0
                if not seen[c]:
                    seen[c] = True
                    distinct += 1.0
                if j == group_start[g]:
                    since_first = age
                since_last = age
                newest[t] = age
                decayed += type_weights[t] * 2.0 ** (-age / half_life_days)
                if age <= velocity_days:
                    recent += 1.0
                elif age <= 2 * velocity_days:
                    before += 1.0
            block[misc_at] = since_last
            block[misc_at + 1] = since_first
            block[misc_at + 2] = decayed
            block[misc_at + 3] = recent - before
            block[misc_at + 4] = distinct
            for h in range(high_intent.shape[0]):
                block[misc_at + 5 + h] = newest[high_intent[h]] if high_intent[h] >= 0 else NEVER_DAYS
            for col in range(n_touch):
                out[i, col] = block[col]
        r = attr_row[i]
        out[i, n_touch] = float(as_of[i] - created[r]) / NS_PER_DAY
        for a in range(n_attr):
            out[i, n_touch + 1 + a] = attrs[r, a]
    return out


@numba.njit(nogil=True, cache=KEEP_COMPILED)
def group_touches(
    order: np.ndarray, lead: np.ndarray, time: np.ndarray, ttype: np.ndarray, chan: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Touches taken in ``order`` (by lead, time, type, channel), and each lead's range among them.

    Every touch counts, even one equal to another in lead, time, type and channel: a CRM export with
    date-only times holds many such touches that are really distinct. Re-sent rows are for the data
    contract to drop (by ``touch_id``, see ``training.data.validate_touchpoints``), not for this kernel.

    Returns the touches' times, types and channels, then ``group_start`` and ``group_end``: lead ``g``'s
    touches are ``[group_start[g], group_end[g])`` (an empty range for a lead without touches). One pass,
    so that a served lead does not pay a dozen small array operations for it.
    """
    m = order.shape[0]
    out_time = np.empty(m, dtype=np.int64)
    out_type = np.empty(m, dtype=np.int64)
    out_chan = np.empty(m, dtype=np.int64)
    group_start = np.zeros(n_groups, dtype=np.int64)
    group_end = np.zeros(n_groups, dtype=np.int64)
    previous = -1
    for i in range(m):
        j = order[i]
        g = lead[j]
        if previous < 0 or g != lead[previous]:
            group_start[g] = i
        out_time[i] = time[j]
        out_type[i] = ttype[j]
        out_chan[i] = chan[j]
        group_end[g] = i + 1
        previous = j
    return out_time, out_type, out_chan, group_start, group_end
