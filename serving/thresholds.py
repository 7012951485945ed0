"""Threshold policies: append-only history, two-sided approval, and the cut-offs in force for a model.

Three append-only tables: ``threshold_policies`` (what was proposed, never changed), ``threshold_decisions``
(who approved or rejected, unique per policy and role) and ``threshold_activations`` (a gapless sequence:
the policy with the highest sequence number is active).

Decisions on one proposal are serialised for real: each decision's transaction first locks the proposal's row
(a no-op update: a row lock on PostgreSQL, the write lock on SQLite), then reads the decisions already made,
so two sides approving a system proposal at the same moment see each other and exactly one activates it.
Approvals of two different proposals racing for the next activation number are retried.

What is in force is always a version of its own: the active policy when it was agreed for the served model
version, else the proposal mapping it to that version (provisional until both sides approve it), else the
model's default cut-offs (version 0). Reading it never writes: only the server, on seeing a model version it
has no cut-offs for, opens the mapped proposal, once (a unique key makes it idempotent across processes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy import (
    Column,
    Connection,
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
    update,
)
from sqlalchemy.exc import IntegrityError

from models.cutoffs import GradeCutoffs
from serving.errors import Conflict, Forbidden, InvalidLeadData, NotFound
from serving.store import Principal, metadata

if TYPE_CHECKING:  # the registry and the trade-off load MLflow and SciPy: only the server and the CLI need them
    from models.registry import LoadedModel
    from models.threshold_analysis import TradeOff

SIDES = ("marketing", "sales")
SYSTEM = "system"
SYSTEM_PRINCIPAL = Principal(0, "leadscore", SYSTEM, "leadscore")
ACTIVATION_RETRIES = 20

log = logging.getLogger("leadscore.thresholds")

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
    Column("proposed_owner", String(320), nullable=True),
    Column("reason", String(2000), nullable=False),
    Column("origin", String(200), nullable=False),
    Column("auto_key", String(300), nullable=True, unique=True),
    Column("mapped_from_policy", Integer, nullable=True),  # the agreed policy a system proposal maps
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
    Column("decided_owner", String(320), nullable=True),
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
    proposed_owner: str | None = None
    auto_key: str | None = None
    mapped_from_policy: int | None = None


@dataclass(frozen=True)
class InForce:
    """What the scorer applies now, and where it comes from.

    Attributes:
        cutoffs: the cut-offs applied (probabilities, 0-1).
        version: the threshold version naming exactly those cut-offs: the id of the policy or mapped proposal
            they come from, or 0 for the model's default cut-offs.
        policy: the active policy (the last one both sides agreed), if any.
        mapped_from_model_version: set when the cut-offs are the active policy's, mapped by share of leads from
            the model version it was agreed for.
        applied: the policy or proposal whose cut-offs are applied (None for the model's defaults).
        approved: whether the applied cut-offs were approved by both sides.
        explanation: plain words: where the cut-offs come from, and what awaits a decision.
        pending: proposals for the served model version awaiting a decision.
    """

    cutoffs: GradeCutoffs
    version: int
    policy: Policy | None
    mapped_from_model_version: str | None
    applied: Policy | None = None
    approved: bool = False
    explanation: str = ""
    pending: tuple[Policy, ...] = ()


def mapping_key(model_name: str, model_version: str, policy_id: int) -> str:
    """The unique key of the proposal mapping policy ``policy_id`` to a model version (one per pair)."""
    return f"{model_name}:{model_version}:from-policy-{policy_id}"


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


MAX_REASON = 2000
MAX_POLICY_ID = 2**31 - 1


def validate_reason(reason: str, field: str = "reason") -> None:
    """A reason is kept in the audit history: at most MAX_REASON characters, no control characters but line
    breaks and tabs (PostgreSQL cannot store a NUL)."""
    if len(reason) > MAX_REASON:
        raise InvalidLeadData(
            f"a reason has at most {MAX_REASON} characters (got {len(reason)})", field=["body", field]
        )
    bad = sorted({c for c in reason if (ord(c) < 32 and c not in "\n\r\t") or ord(c) == 127})
    if bad:
        listed = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise InvalidLeadData(f"a reason may not contain control characters ({listed})", field=["body", field])


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

    def by_auto_key(self, auto_key: str) -> Policy | None:
        """The system proposal opened under ``auto_key``, if any."""
        found = self._load(policies.c.auto_key == auto_key)
        return found[0] if found else None

    def for_version(self, model_name: str, model_version: str) -> list[Policy]:
        """Every proposal made for this model version, oldest first."""
        return self._load((policies.c.model_name == model_name) & (policies.c.model_version == model_version))

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
                    "owner": d.decided_owner,
                    "reason": d.reason,
                    "at": _aware(d.decided_at),
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
            elif r.mapped_from_policy is not None and (latest is None or latest.policy_id != r.mapped_from_policy):
                status = "outdated"  # it maps a policy that is no longer the agreed one
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
                    proposed_owner=r.proposed_owner,
                    auto_key=r.auto_key,
                    mapped_from_policy=r.mapped_from_policy,
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
        mapped_from_policy: int | None = None,
    ) -> Policy:
        if who.role not in (*SIDES, SYSTEM):
            raise Forbidden("only marketing or sales propose thresholds")
        _require_owner(who)
        validate_policy(cutoff, grades)
        validate_reason(reason)
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
                    proposed_owner=who.owner,
                    reason=reason,
                    origin=origin,
                    auto_key=auto_key,
                    mapped_from_policy=mapped_from_policy,
                    created_at=datetime.now(UTC),
                )
            )
            new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return self.get(new_id)

    def decide(
        self, policy_id: int, who: Principal, approve: bool, reason: str, served_version: str | None = None
    ) -> Policy:
        """Approve or reject: only the other side decides, a system proposal needs both sides, and nobody decides
        a proposal they made or already decided, whatever key they use.

        Raises:
            NotFound: no such proposal.
            Forbidden: the caller may not decide it (role, own proposal, no owner on the key).
            Conflict: it is no longer pending, this side already decided it, or (approving, with
                ``served_version`` given) it was made for a model version that is no longer served.
        """
        if who.role not in SIDES:
            raise Forbidden("only marketing or sales decide thresholds (admin may not stand in for a side)")
        _require_owner(who)
        validate_reason(reason)
        if not 1 <= policy_id <= MAX_POLICY_ID:
            raise NotFound(f"no threshold proposal {policy_id}")
        for attempt in range(ACTIVATION_RETRIES):
            try:
                with self.engine.begin() as conn:
                    self._decide_locked(conn, policy_id, who, approve, reason, served_version)
                break
            except IntegrityError as err:  # another proposal took the same activation number: decide again
                if attempt == ACTIVATION_RETRIES - 1:
                    raise Conflict(
                        f"proposal {policy_id} could not be activated after {ACTIVATION_RETRIES} attempts; retry"
                    ) from err
        return self.get(policy_id)

    def _decide_locked(
        self, conn: Connection, policy_id: int, who: Principal, approve: bool, reason: str, served: str | None
    ) -> None:
        # The lock comes first: every read below sees every decision committed before it.
        locked = conn.execute(update(policies).where(policies.c.id == policy_id).values(id=policies.c.id))
        if locked.rowcount != 1:
            raise NotFound(f"no threshold proposal {policy_id}")
        row = conn.execute(select(policies).where(policies.c.id == policy_id)).one()
        if row.proposed_role == who.role:
            raise Forbidden(f"a proposal from {who.role} is decided by the other side")
        if row.proposed_owner is not None and row.proposed_owner == who.owner:
            raise Forbidden(f"{who.owner} made proposal {policy_id}: someone else decides it, whatever their key")
        made = conn.execute(select(decisions).where(decisions.c.policy_id == policy_id)).all()
        activated = conn.execute(select(activations.c.seq).where(activations.c.policy_id == policy_id)).first()
        if activated is not None:
            raise Conflict(f"proposal {policy_id} is already active or superseded")
        if any(d.decision == "rejected" for d in made):
            raise Conflict(f"proposal {policy_id} is already rejected")
        if any(d.decided_role == who.role for d in made):
            raise Conflict(f"{who.role} already decided proposal {policy_id}")
        if any(d.decided_owner is not None and d.decided_owner == who.owner for d in made):
            raise Forbidden(f"{who.owner} already decided proposal {policy_id} for the other side")
        if approve and row.mapped_from_policy is not None:
            latest = conn.execute(select(activations.c.policy_id).order_by(activations.c.seq.desc()).limit(1)).first()
            if latest is None or latest.policy_id != row.mapped_from_policy:
                raise Conflict(
                    f"proposal {policy_id} maps policy {row.mapped_from_policy}, which is no longer the agreed policy "
                    f"(policy {latest.policy_id if latest else None} is): it is outdated and cannot be approved"
                )
        if approve and served is not None and row.model_version != served:
            raise Conflict(
                f"proposal {policy_id} was made for model version {row.model_version}, and version {served} is "
                "served now: its cut-offs mean other shares of leads; propose again for the served model"
            )
        now = datetime.now(UTC)
        conn.execute(
            insert(decisions).values(
                policy_id=policy_id,
                decision="approved" if approve else "rejected",
                decided_by=who.name,
                decided_role=who.role,
                decided_owner=who.owner,
                reason=reason,
                decided_at=now,
            )
        )
        if not approve:
            return
        needed = set(SIDES) if row.proposed_role == SYSTEM else {who.role}
        approved = {d.decided_role for d in made if d.decision == "approved"} | {who.role}
        if needed <= approved:
            current = conn.execute(select(func.max(activations.c.seq))).scalar() or 0
            conn.execute(insert(activations).values(seq=current + 1, policy_id=policy_id, activated_at=now))

    def open_mapping(self, policy: Policy, model_name: str, model_version: str, mapped: GradeCutoffs) -> Policy | None:
        """Open (once) the system proposal mapping ``policy`` to a model version; returns it, or None when the
        mapped cut-offs are degenerate (out of order or at 0 or 1) and cannot be proposed."""
        key = mapping_key(model_name, model_version, policy.id)
        existing = self.by_auto_key(key)
        if existing is not None:
            return existing
        grades = Grades(mapped.a, mapped.b, mapped.c)
        try:
            validate_policy(mapped.qualified, grades)
        except InvalidLeadData:
            return None
        try:
            return self.propose(
                SYSTEM_PRINCIPAL,
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
                mapped_from_policy=policy.id,
            )
        except IntegrityError:  # another process opened it at the same moment
            return self.by_auto_key(key)


def _require_owner(who: Principal) -> None:
    if not who.owner:
        raise Forbidden(
            "this key belongs to no person: thresholds are proposed and decided with a key made with "
            "`leadscore keys create --role ROLE --owner EMAIL`"
        )


class ThresholdService:
    """The cut-offs in force per model version, kept in memory for the scoring path.

    ``in_force`` only reads memory; ``refresh`` (blocking: database reads, and for the server the opening of a
    mapped proposal) is called off the event loop, when a model is loaded and then every ``refresh_seconds``.
    A mapping that fails (e.g. an old version's test predictions cannot be fetched) is retried with back-off:
    after ``first_backoff_seconds`` (1 s), then twice as long each time, up to ``max_backoff_seconds``.
    """

    def __init__(
        self, store: ThresholdStore, first_backoff_seconds: float = 1.0, max_backoff_seconds: float = 300.0
    ) -> None:
        self.store = store
        self.first_backoff_seconds = first_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._lock = threading.Lock()
        self._reading = threading.Lock()
        self._known: dict[tuple[str, str], InForce] = {}
        self._failures: dict[str, tuple[float, float, str]] = {}  # mapping key -> (retry at, back-off, error)

    def in_force(self, model_name: str, model_version: str, defaults: GradeCutoffs) -> InForce:
        """The cut-offs in force for a model version, from memory (never blocks); the model's defaults, named
        version 0, until ``refresh`` has run for that version."""
        known = self._known.get((model_name, model_version))
        if known is not None:
            return known
        return InForce(defaults, 0, None, None, explanation="the model's default cut-offs (thresholds not read yet)")

    def refresh(
        self,
        model_name: str,
        model_version: str,
        defaults: GradeCutoffs,
        tradeoff: Callable[[str], TradeOff] | None = None,
    ) -> InForce:
        """Read what is in force for a model version and remember it (blocking).

        With ``tradeoff`` (the server), a policy agreed for another model version and not yet mapped to this
        one is mapped by share of leads and the mapping opened as a system proposal, once. Without it (the
        CLI), nothing is written.
        """
        force = self._read_and_keep(model_name, model_version, defaults)
        if tradeoff is not None and force.policy is not None and force.applied is None:
            self._map(force.policy, model_name, model_version, tradeoff)
            force = self._read_and_keep(model_name, model_version, defaults)  # the mapping, or why there is none
        return force

    def _read_and_keep(self, model_name: str, model_version: str, defaults: GradeCutoffs) -> InForce:
        # One reading at a time, kept before the next starts: a reading taken before a decision committed can
        # never overwrite one taken after it (the deciding route's own refresh is the later one).
        with self._reading:
            force = self._read(model_name, model_version, defaults)
            with self._lock:
                self._known[(model_name, model_version)] = force
        return force

    def mapping_error(self, model_name: str, model_version: str, policy_id: int) -> str | None:
        failure = self._failures.get(mapping_key(model_name, model_version, policy_id))
        return failure[2] if failure else None

    def _map(
        self, policy: Policy, model_name: str, model_version: str, tradeoff: Callable[[str], TradeOff]
    ) -> Policy | None:
        key = mapping_key(model_name, model_version, policy.id)
        failure = self._failures.get(key)
        if failure is not None and time.monotonic() < failure[0]:
            return None
        try:
            old, new = tradeoff(policy.model_version), tradeoff(model_version)
            mapped = GradeCutoffs(
                a=new.cutoff_for_share(old.share_at(policy.grades.a)),
                b=new.cutoff_for_share(old.share_at(policy.grades.b)),
                c=new.cutoff_for_share(old.share_at(policy.grades.c)),
                qualified=new.cutoff_for_share(old.share_at(policy.cutoff)),
            )
            opened = self.store.open_mapping(policy, model_name, model_version, mapped)
            if opened is None:
                raise ValueError(f"the mapped cut-offs are degenerate ({mapped})")
        except Exception as err:
            backoff = min(self.max_backoff_seconds, 2 * failure[1]) if failure else self.first_backoff_seconds
            self._failures[key] = (time.monotonic() + backoff, backoff, f"{type(err).__name__}: {err}")
            log.warning(
                "could not map policy %s to model version %s (retry in %.0f s): %s",
                policy.id,
                model_version,
                backoff,
                err,
            )
            return None
        self._failures.pop(key, None)
        return opened

    def _read(self, model_name: str, model_version: str, defaults: GradeCutoffs) -> InForce:
        policy = self.store.active()
        # One read of this version's proposals gives both the pending ones and the mapping of the active policy.
        for_version = self.store.for_version(model_name, model_version)
        pending = tuple(p for p in for_version if p.status == "proposed")
        waiting = (
            "; awaiting a decision: " + ", ".join(f"proposal {p.id} (cut-off {p.cutoff:.4f})" for p in pending)
            if pending
            else ""
        )
        if policy is None:
            return InForce(
                defaults,
                0,
                None,
                None,
                None,
                False,
                "the model's default cut-offs: no policy agreed yet" + waiting,
                pending,
            )
        if policy.model_version == model_version and policy.model_name == model_name:
            cut = GradeCutoffs(policy.grades.a, policy.grades.b, policy.grades.c, policy.cutoff)
            return InForce(
                cut,
                policy.id,
                policy,
                None,
                policy,
                True,
                f"policy {policy.id}, agreed by both sides" + waiting,
                pending,
            )
        key = mapping_key(model_name, model_version, policy.id)
        mapped = next((p for p in for_version if p.auto_key == key), None)
        if mapped is None:
            error = self.mapping_error(model_name, model_version, policy.id)
            why = f" ({error})" if error else ""
            return InForce(
                defaults,
                0,
                policy,
                None,
                None,
                False,
                f"NOT APPROVED: the model's default cut-offs; policy {policy.id} was agreed for model version "
                f"{policy.model_version} and is not mapped to version {model_version} yet{why}" + waiting,
                pending,
            )
        cut = GradeCutoffs(mapped.grades.a, mapped.grades.b, mapped.grades.c, mapped.cutoff)
        state = {
            "proposed": "awaiting approval by both sides",
            "rejected": "rejected by "
            + ", ".join(str(d["role"]) for d in mapped.decisions if d["decision"] == "rejected")
            + ": propose new cut-offs",
        }.get(mapped.status, mapped.status)
        return InForce(
            cut,
            mapped.id,
            policy,
            policy.model_version,
            mapped,
            False,
            f"NOT APPROVED: provisional cut-offs of proposal {mapped.id}, policy {policy.id} (agreed for model version "
            f"{policy.model_version}) mapped to version {model_version} by share of leads; {state}" + waiting,
            pending,
        )


PREDICTION_COLUMNS = ("lead_id", "as_of", "created_at", "probability", "label")


def tradeoff_of(loaded: LoadedModel) -> TradeOff:
    """The trade-off of a loaded model version, replayed per lead on the test predictions stored with it.

    Reads only the columns the replay uses; a model stored without ``created_at`` (trained before scoring
    moments) is replayed with each row as its own lead.
    """
    from models.threshold_analysis import TradeOff

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
        follow_up_days=int(follow) if (follow := (meta.get("windows") or {}).get("test_follow_up_days")) else None,
    )
