"""Threshold policies: append-only history, two-sided approval, and the cut-offs in force for a model.

Three append-only tables: ``threshold_policies`` (what was proposed, never changed), ``threshold_decisions``
(who approved or rejected, unique per policy and role) and ``threshold_activations`` (a gapless sequence:
the policy with the highest sequence number is active). Racing approvals collide on those unique keys,
so two policies can never become active at once; the loser gets a 409.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from models.registry import LoadedModel
from models.scoring_model import GradeCutoffs
from models.threshold_analysis import TradeOff
from serving.errors import Conflict, Forbidden, InvalidLeadData, NotFound
from serving.store import Principal, metadata

SIDES = ("marketing", "sales")
SYSTEM = "system"

policies = Table(
    "threshold_policies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(50), nullable=False),
    Column("cutoff", Float, nullable=False),
    Column("grade_a", Float, nullable=False),
    Column("grade_b", Float, nullable=False),
    Column("grade_c", Float, nullable=False),
    Column("proposed_by", String(200), nullable=False),
    Column("proposed_role", String(20), nullable=False),
    Column("reason", String(2000), nullable=False),
    Column("origin", String(200), nullable=False),
    Column("auto_key", String(300), nullable=True, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
decisions = Table(
    "threshold_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("policy_id", Integer, ForeignKey("threshold_policies.id"), nullable=False),
    Column("decision", String(20), nullable=False),
    Column("decided_by", String(200), nullable=False),
    Column("decided_role", String(20), nullable=False),
    Column("reason", String(2000), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("policy_id", "decided_role", name="one_decision_per_side"),
)
activations = Table(
    "threshold_activations",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("policy_id", Integer, ForeignKey("threshold_policies.id"), nullable=False, unique=True),
    Column("activated_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Grades:
    a: float
    b: float
    c: float


@dataclass
class Policy:
    id: int
    model_name: str
    model_version: str
    cutoff: float
    grades: Grades
    status: str
    proposed_by: str
    proposed_role: str
    reason: str
    origin: str
    created_at: datetime
    decisions: list[dict[str, object]] = field(default_factory=list)
    activated_at: datetime | None = None


@dataclass(slots=True)  # built per request: plain slots (a frozen init costs twice as much)
class InForce:
    """What the scorer applies now, and where it comes from."""

    cutoffs: GradeCutoffs
    version: int
    policy: Policy | None
    mapped_from_model_version: str | None


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def validate_policy(cutoff: float, grades: Grades) -> None:
    if not 0 < cutoff < 1:
        raise InvalidLeadData("cut-off must be strictly between 0 and 1", field=["body", "cutoff"])
    for name in ("a", "b", "c"):
        if not 0 < getattr(grades, name) < 1:
            raise InvalidLeadData("grade bounds must be strictly between 0 and 1", field=["body", "grades", name])
    if not grades.a > grades.b > grades.c:
        raise InvalidLeadData("grade bounds must be in order: A > B > C", field=["body", "grades"])


class ThresholdStore:
    """Reads and appends threshold history; every write is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- reads -----------------------------------------------------------------------------
    def get(self, policy_id: int) -> Policy:
        found = self._load(policies.c.id == policy_id)
        if not found:
            raise NotFound(f"no threshold proposal {policy_id}")
        return found[0]

    def history(self) -> list[Policy]:
        return self._load(None)

    def active(self) -> Policy | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(activations.c.policy_id).order_by(activations.c.seq.desc()).limit(1)).first()
        return None if row is None else self.get(int(row.policy_id))

    def active_version(self) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(activations.c.seq))).scalar()

    def _load(self, where: object) -> list[Policy]:
        with self.engine.connect() as conn:
            query = select(policies).order_by(policies.c.id)
            if where is not None:
                query = query.where(where)  # type: ignore[arg-type]
            rows = conn.execute(query).all()
            ids = [r.id for r in rows]
            decs = conn.execute(select(decisions).where(decisions.c.policy_id.in_(ids)).order_by(decisions.c.id)).all()
            acts = conn.execute(select(activations).where(activations.c.policy_id.in_(ids))).all()
            latest = conn.execute(select(activations.c.policy_id).order_by(activations.c.seq.desc()).limit(1)).first()
        by_policy: dict[int, list[dict[str, object]]] = {}
        for d in decs:
            by_policy.setdefault(d.policy_id, []).append(
                {
                    "decision": d.decision,
                    "by": d.decided_by,
                    "role": d.decided_role,
                    "reason": d.reason,
                    "at": d.decided_at,
                }
            )
        activated = {a.policy_id: _aware(a.activated_at) for a in acts}
        out = []
        for r in rows:
            decided = by_policy.get(r.id, [])
            if latest is not None and latest.policy_id == r.id:
                status = "active"
            elif r.id in activated:
                status = "superseded"
            elif any(d["decision"] == "rejected" for d in decided):
                status = "rejected"
            else:
                status = "proposed"
            out.append(
                Policy(
                    id=r.id,
                    model_name=r.model_name,
                    model_version=r.model_version,
                    cutoff=r.cutoff,
                    grades=Grades(r.grade_a, r.grade_b, r.grade_c),
                    status=status,
                    proposed_by=r.proposed_by,
                    proposed_role=r.proposed_role,
                    reason=r.reason,
                    origin=r.origin,
                    created_at=_aware(r.created_at),  # type: ignore[arg-type]
                    decisions=decided,
                    activated_at=activated.get(r.id),
                )
            )
        return out

    # ---- writes ----------------------------------------------------------------------------
    def propose(
        self,
        who: Principal,
        model_name: str,
        model_version: str,
        cutoff: float,
        grades: Grades,
        reason: str,
        origin: str = "manual",
        auto_key: str | None = None,
    ) -> Policy:
        if who.role not in (*SIDES, SYSTEM):
            raise Forbidden("only marketing or sales propose thresholds")
        validate_policy(cutoff, grades)
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(policies).values(
                    model_name=model_name,
                    model_version=model_version,
                    cutoff=cutoff,
                    grade_a=grades.a,
                    grade_b=grades.b,
                    grade_c=grades.c,
                    proposed_by=who.name,
                    proposed_role=who.role,
                    reason=reason,
                    origin=origin,
                    auto_key=auto_key,
                    created_at=datetime.now(UTC),
                )
            )
            new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return self.get(new_id)

    def decide(self, policy_id: int, who: Principal, approve: bool, reason: str) -> Policy:
        """Approve or reject; only the other side decides, and a system proposal needs both sides."""
        policy = self.get(policy_id)
        if who.role not in SIDES:
            raise Forbidden("only marketing or sales decide thresholds (admin may not stand in for a side)")
        if policy.proposed_role == who.role:
            raise Forbidden(f"a proposal from {who.role} is decided by the other side")
        if policy.status != "proposed":
            raise Conflict(f"proposal {policy_id} is already {policy.status}")
        if any(d["role"] == who.role for d in policy.decisions):
            raise Conflict(f"{who.role} already decided proposal {policy_id}")
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(decisions).values(
                        policy_id=policy_id,
                        decision="approved" if approve else "rejected",
                        decided_by=who.name,
                        decided_role=who.role,
                        reason=reason,
                        decided_at=now,
                    )
                )
                if approve:
                    needed = set(SIDES) if policy.proposed_role == SYSTEM else {who.role}
                    rows = conn.execute(
                        select(decisions.c.decided_role, decisions.c.decision).where(decisions.c.policy_id == policy_id)
                    ).all()
                    if any(r.decision == "rejected" for r in rows):
                        raise Conflict(f"proposal {policy_id} was rejected meanwhile")
                    if needed <= {r.decided_role for r in rows if r.decision == "approved"}:
                        current = conn.execute(select(func.max(activations.c.seq))).scalar() or 0
                        conn.execute(insert(activations).values(seq=current + 1, policy_id=policy_id, activated_at=now))
        except IntegrityError as err:
            raise Conflict(
                f"proposal {policy_id} was decided by someone else at the same moment; reload and retry"
            ) from err
        return self.get(policy_id)


class ThresholdService:
    """The cut-offs in force for the served model, cached briefly; opens a mapped proposal on model change."""

    def __init__(self, store: ThresholdStore, cache_seconds: float = 1.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: tuple[float, int | None, Policy | None] | None = None
        self._lock = threading.Lock()
        self._opened: set[str] = set()

    def invalidate(self) -> None:
        with self._lock:
            self._cache = None

    def active_policy(self) -> Policy | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[2]
        policy = self.store.active()
        with self._lock:
            self._cache = (now, policy.id if policy else None, policy)
        return policy

    def in_force(
        self, model_name: str, model_version: str, defaults: GradeCutoffs, tradeoff: Callable[[str], TradeOff | None]
    ) -> InForce:
        """The active policy; mapped by share of leads when it was set for another model version.

        Each cut-off (qualified and grade bounds) of the old version becomes the cut-off of the new version that
        hands over the same share of test-window LEADS (a lead counts once, handed over the first time its
        probability reaches the cut-off), from each version's replayed trade-off.
        """
        policy = self.active_policy()
        if policy is None:
            return InForce(defaults, 0, None, None)
        if policy.model_version == model_version and policy.model_name == model_name:
            cut = GradeCutoffs(policy.grades.a, policy.grades.b, policy.grades.c, policy.cutoff)
            return InForce(cut, policy.id, policy, None)
        old, new = tradeoff(policy.model_version), tradeoff(model_version)
        if old is None or new is None:
            return InForce(defaults, policy.id, policy, policy.model_version)
        mapped = GradeCutoffs(
            a=new.cutoff_for_share(old.share_at(policy.grades.a)),
            b=new.cutoff_for_share(old.share_at(policy.grades.b)),
            c=new.cutoff_for_share(old.share_at(policy.grades.c)),
            qualified=new.cutoff_for_share(old.share_at(policy.cutoff)),
        )
        self._open_mapped_proposal(policy, model_name, model_version, mapped)
        return InForce(mapped, policy.id, policy, policy.model_version)

    def _open_mapped_proposal(self, policy: Policy, model_name: str, model_version: str, mapped: GradeCutoffs) -> None:
        key = f"{model_name}:{model_version}:from-policy-{policy.id}"
        if key in self._opened:
            return
        self._opened.add(key)
        grades = Grades(mapped.a, mapped.b, mapped.c)
        try:
            validate_policy(mapped.qualified, grades)
            self.store.propose(
                Principal(0, "leadscore", SYSTEM),
                model_name,
                model_version,
                mapped.qualified,
                grades,
                reason=(
                    f"model {model_name} version {model_version} became champion: cut-offs mapped from policy "
                    f"{policy.id} (model version {policy.model_version}) so the same share of leads is handed over"
                ),
                origin=f"model change (mapped from policy {policy.id})",
                auto_key=key,
            )
        except (IntegrityError, InvalidLeadData):
            pass  # another process opened it already, or the mapping is degenerate (kept as defaults)


PREDICTION_COLUMNS = ("lead_id", "as_of", "created_at", "probability", "label")


def tradeoff_of(loaded: LoadedModel) -> TradeOff:
    """The trade-off of a loaded model version, replayed per lead on the test predictions stored with it.

    Reads only the columns the replay uses; a model stored without ``created_at`` (trained before scoring
    moments) is replayed with each row as its own lead.
    """
    path = loaded.path / "test_predictions.parquet"
    stored = set(pq.read_schema(path).names)
    preds = pd.read_parquet(path, columns=[c for c in PREDICTION_COLUMNS if c in stored])
    meta = loaded.model.meta
    inflow = float(meta.get("leads_per_week") or 0.0)
    horizon = meta.get("label_horizon_days", meta.get("horizon_days"))
    interval = meta.get("leads_per_week_interval")
    return TradeOff.from_predictions(
        preds,
        inflow,
        horizon_days=int(horizon) if horizon is not None else None,
        leads_per_week_interval=(float(interval[0]), float(interval[1])) if interval else None,
        leads_per_week_basis=str(meta.get("leads_per_week_basis") or ""),
    )
