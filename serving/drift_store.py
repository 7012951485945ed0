"""What drift monitoring counts while serving: the scores and features answered, in the bins fixed at training,
per day and model version (one row per bin: a day of heavy traffic is a few thousand rows, not millions).

Columns counted (``column`` of the ``drift_counts`` table):

- ``score`` and every feature: the bins of the model's :class:`models.drift.DriftReference` (scores);
- ``arrival:score`` and ``arrival:<attribute feature>``: the same bins, counting only each lead's answer on arrival:
  its first answer given within ``ARRIVAL_SECONDS`` of its creation (``as_of - created_at``), once a day per
  server process, the verdict's counts (the score and the features of kind ``VERDICT_KINDS``, see
  models/drift.py);
- ``unseen:<attribute>``: bin 0 a known category, bin 1 a category the model never saw (scores with the
  attribute present; missing values are not counted);
- ``touch_types``: bin 0 touches of a type the model knows, bin 1 of a type it does not (touches, from the
  features ``n_touches_all`` and ``n_other_all``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, Column, Engine, Integer, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from models.drift import ARRIVAL_SECONDS, VERDICT_KINDS, DriftReference
from serving.store import metadata

if TYPE_CHECKING:
    from models.scoring_model import ScoringModel

TOUCH_TYPES = "touch_types"
UNSEEN = "unseen:"
ARRIVAL = "arrival:"
LEADS = "leads"  # bin 0: distinct leads answered that day (per server process: a lead two workers scored counts twice)
MAX_LEADS_REMEMBERED = 200_000  # per day and process; past it, new leads are no longer counted

drift_counts = Table(
    "drift_counts",
    metadata,
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD (UTC) of the answers
    Column("model_version", String(50), primary_key=True),
    Column("column", String(250), primary_key=True),
    Column("bin", Integer, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

Key = tuple[str, str, str, int]  # day, model version, column, bin


class DriftCounter:
    """Counts answers into the bins of their model's reference (the score log's writer calls it per flush)."""

    def __init__(self) -> None:
        self._model: ScoringModel | None = None
        self._reference: DriftReference | None = None
        self._verdict: frozenset[str] = frozenset()  # the columns counted on arrival: score and attribute features
        self._known: dict[tuple[str, object], bool | None] = {}  # (attribute, value) -> known? (None: missing)
        self._leads: tuple[str, set[str]] = ("", set())  # the day, and the leads answered that day
        self._arrived: tuple[str, set[str]] = ("", set())  # the day, and the leads counted on arrival that day

    def reference(self, model: ScoringModel) -> DriftReference | None:
        """The model's reference (read once per model; None for a model trained before references)."""
        if self._model is not model:
            self._model, self._reference = model, DriftReference.from_dict(model.meta.get("drift_reference"))
            self._verdict = frozenset(
                ["score", *(i.name for i in model.spec.feature_infos() if i.kind in VERDICT_KINDS)]
            )
        return self._reference

    def count(
        self,
        day: date,
        version: str,
        model: ScoringModel,
        lead_ids: Sequence[str],
        attributes: Sequence[Mapping[str, Any]],
        probabilities: np.ndarray,
        features: np.ndarray,
        ages: np.ndarray | None = None,
    ) -> Counter[Key]:
        """The counts of these answers: per answer its lead id, the lead's attributes, its probability, its
        row of ``features`` (model order) and ``ages``: seconds from the lead's creation to the moment scored
        (``as_of``; None: no answer is counted as on arrival)."""
        out: Counter[Key] = Counter()
        reference = self.reference(model)
        if reference is None or len(lead_ids) == 0:
            return out
        d = day.isoformat()
        if self._leads[0] != d:
            self._leads = (d, set())
        seen_today = self._leads[1]
        before = len(seen_today)
        if before < MAX_LEADS_REMEMBERED:
            seen_today.update(lead_ids)
            out[d, version, LEADS, 0] += len(seen_today) - before
        # on arrival: a lead's first answer within ARRIVAL_SECONDS of its creation, once a day (the leads
        # remembered for this are only those counted, a few per new lead, whatever is re-scored that day)
        arrival = np.zeros(len(lead_ids), dtype=bool)
        if ages is not None:
            if self._arrived[0] != d:
                self._arrived = (d, set())
            arrived = self._arrived[1]
            young = np.flatnonzero((ages >= 0) & (ages < ARRIVAL_SECONDS))
            for i in young.tolist():
                lead_id = lead_ids[i]
                if lead_id not in arrived and len(arrived) < MAX_LEADS_REMEMBERED:
                    arrived.add(lead_id)
                    arrival[i] = True
        names = model.spec.feature_names
        on_arrival = bool(arrival.any()) and reference.arrival is not None
        for column, bins in reference.columns():
            values = probabilities if column == "score" else features[:, names.index(column)]
            for b, n in enumerate(bins.counts(values).astype(np.int64).tolist()):
                if n:
                    out[d, version, column, b] += n
            if on_arrival and column in self._verdict:
                for b, n in enumerate(bins.counts(np.asarray(values)[arrival]).astype(np.int64).tolist()):
                    if n:
                        out[d, version, ARRIVAL + column, b] += n
        for attribute, codes in model.spec.category_codes.items():
            seen = unseen = 0
            # attribute values are JSON scalars (hashable); counted once per distinct value
            for value, n in Counter([a.get(attribute) for a in attributes]).items():
                known = self._known_value(attribute, value, codes)
                if known is True:
                    seen += n
                elif known is False:
                    unseen += n
            for b, n in ((0, seen), (1, unseen)):
                if n:
                    out[d, version, UNSEEN + attribute, b] += n
        if "n_touches_all" in names and "n_other_all" in names:
            touches = float(np.nansum(features[:, names.index("n_touches_all")]))
            other = float(np.nansum(features[:, names.index("n_other_all")]))
            for b, n in ((0, int(round(touches - other))), (1, int(round(other)))):
                if n:
                    out[d, version, TOUCH_TYPES, b] += n
        return out

    def _known_value(self, attribute: str, value: object, codes: dict[str, int]) -> bool | None:
        try:
            return self._known[attribute, value]
        except KeyError:
            from features.spec import category_key  # (features/ loads numba: only when scoring)

            key = category_key(value)
            known = None if key is None else key in codes
            if len(self._known) < 100_000:
                self._known[attribute, value] = known
            return known


def _upsert(engine: Engine) -> Any:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(drift_counts)
    return stmt.on_conflict_do_update(
        index_elements=["day", "model_version", "column", "bin"],
        set_={"count": drift_counts.c.count + stmt.excluded.count},
    )


class DriftStore:
    """The ``drift_counts`` table (blocking: call from worker threads)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, counts: Counter[Key]) -> None:
        """Add counts to the stored ones (an upsert per bin; safe across processes)."""
        if not counts:
            return
        rows = [{"day": d, "model_version": v, "column": c, "bin": b, "count": n} for (d, v, c, b), n in counts.items()]
        with self.engine.begin() as conn:
            conn.execute(_upsert(self.engine), rows)

    def counts(self, model_version: str, days: Iterable[date]) -> pd.DataFrame:
        """day, column, bin, count of one model version on these days."""
        wanted = [d.isoformat() for d in days]
        query = select(drift_counts.c.day, drift_counts.c.column, drift_counts.c.bin, drift_counts.c.count).where(
            drift_counts.c.model_version == model_version, drift_counts.c.day.in_(wanted)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return pd.DataFrame(rows, columns=["day", "column", "bin", "count"])
