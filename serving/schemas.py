"""Every request and response body of the API, in one module."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

# ---- scoring (the hot path): msgspec structs, decoded and encoded without pydantic --------------
# A 1,000-lead batch decodes in ~14 ms with msgspec against ~100 ms with pydantic; serving/bodies.py
# turns these structs into body decoders, OpenAPI components and JSON responses. They hold no
# reference cycles, so the many small ones skip the garbage collector (gc=False: fewer slow GC passes).
Timestamp = Annotated[datetime, msgspec.Meta(description="RFC 3339 / ISO 8601 date-time; naive means UTC.")]
AttributeKey = Annotated[str, msgspec.Meta(max_length=200)]
AttributeValue = bool | int | float | str | None


class TouchIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    occurred_at: Timestamp
    touch_type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    channel: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    campaign: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    value: float | None = None


class LeadIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    lead_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    created_at: Timestamp
    attributes: dict[AttributeKey, AttributeValue] = msgspec.field(default_factory=dict)
    touchpoints: Annotated[list[TouchIn], msgspec.Meta(max_length=10_000)] = msgspec.field(default_factory=list)
    as_of: (
        Annotated[datetime, msgspec.Meta(description="Score as of this time (default: now); later touches ignored.")]
        | None
    ) = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    leads: list[LeadIn]
    explain: Annotated[bool, msgspec.Meta(description="Compute fit, engagement and reasons (costs far more).")] = True


class ReasonOut(msgspec.Struct, kw_only=True, gc=False):
    feature: str
    description: str
    impact: Annotated[float, msgspec.Meta(description="Contribution to the log-odds of converting (+ raises).")]


class ScoreOut(msgspec.Struct, kw_only=True, gc=False):
    lead_id: str
    probability: float
    score: Annotated[int, msgspec.Meta(ge=0, le=100)]
    grade: Literal["A", "B", "C", "D"]
    qualified: bool
    fit: Annotated[int, msgspec.Meta(description="0-100: the score from who the lead is (attributes) alone.")] | None
    engagement: (
        Annotated[int, msgspec.Meta(description="0-100: the score from what the lead does (touches) alone.")] | None
    )
    trend: Annotated[
        Literal["rising", "steady", "falling", "new"],
        msgspec.Meta(description="The score against 7 days before; 'new': the lead is younger than that."),
    ]
    reasons: list[ReasonOut]
    model_version: str
    threshold_version: int


class BatchOut(msgspec.Struct, kw_only=True):
    results: list[ScoreOut]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    detail: list[ErrorItem] | str


class ModelOut(BaseModel):
    name: str
    version: str
    run_id: str | None
    trained_at: str | None
    horizon_days: int | None
    split: str | None
    windows: dict[str, str]
    data_fingerprint: dict[str, object]
    metrics: dict[str, float]
    features: int
    loaded_at: datetime


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    ready: bool
    model_version: str | None
    model_loaded_at: datetime | None
    last_check_at: datetime | None
    last_error: str | None
    warnings: list[str] = Field(default_factory=list, description="E.g. drift: shown, never failing readiness.")


class ReloadOut(BaseModel):
    changed: bool
    model_version: str | None
    error: str | None


class MeOut(BaseModel):
    name: str
    role: str
    owner: str | None = Field(description="The person the key belongs to (e-mail; none on keys made before owners).")


# ---- thresholds -------------------------------------------------------------------------------
Probability = Annotated[float, Field(gt=0, lt=1)]


class GradesIn(_Strict):
    a: Probability = Field(description="Lower probability bound of grade A.")
    b: Probability = Field(description="Lower probability bound of grade B.")
    c: Probability = Field(description="Lower probability bound of grade C (D is below).")


class ProposalIn(_Strict):
    cutoff: Probability = Field(description="Probability at or above which a lead is qualified.")
    grades: GradesIn | None = Field(None, description="Grade bounds; by default the current ones.")
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class DecisionIn(_Strict):
    reason: Annotated[str, Field(max_length=2000)] = ""


class DecisionOut(BaseModel):
    decision: str
    by: str
    role: str
    owner: str | None = Field(None, description="The person whose key decided (e-mail).")
    reason: str
    at: datetime


class PolicyOut(BaseModel):
    version: int = Field(description="The policy's id; scoring answers carry it as threshold_version.")
    model_name: str
    model_version: str
    cutoff: float
    grades: dict[str, float]
    status: Literal["proposed", "active", "rejected", "superseded", "outdated"] = Field(
        description="proposed (awaiting a decision), active, rejected, superseded (was active), or outdated (a "
        "system proposal mapping a policy that is no longer the agreed one; it cannot be approved)."
    )
    proposed_by: str
    proposed_role: str
    proposed_owner: str | None = Field(None, description="The person whose key proposed it (e-mail).")
    reason: str
    origin: str
    created_at: datetime
    activated_at: datetime | None
    decisions: list[DecisionOut]


class ThresholdOut(BaseModel):
    policy: PolicyOut | None = Field(description="The active policy: the last one both sides agreed (none yet).")
    threshold_version: int = Field(
        description="The version naming exactly the cut-offs in force, as scoring answers carry it: the policy or "
        "mapped proposal they come from, or 0 for the model's default cut-offs."
    )
    model_version: str = Field(description="The served model these cut-offs apply to.")
    cutoff: float = Field(description="The qualified cut-off in force for the served model.")
    grades: dict[str, float]
    mapped_from_model_version: str | None = Field(
        description="Set when the policy was agreed for another model and is mapped to this one by share of leads."
    )
    approved: bool = Field(description="Whether both sides approved the cut-offs in force (false: provisional).")
    in_force: PolicyOut | None = Field(
        description="The policy or proposal whose cut-offs are in force (none: the model's default cut-offs)."
    )
    explanation: str = Field(description="In plain words: where the cut-offs in force come from, what is pending.")
    pending: list[PolicyOut] = Field(description="Proposals for the served model awaiting a decision, oldest first.")


class FigureOut(BaseModel):
    value: float
    low: float
    high: float


class AnalysisOut(BaseModel):
    """The trade-off at one cut-off, replayed on the test window as production runs: each lead is handed to
    sales the first time its probability reaches the cut-off. Every count is a count of leads; every interval
    is a 95% interval over leads (Wilson on lead counts; order statistics for the median)."""

    cutoff: float = Field(description="Probability cut-off: a lead is handed over when it first reaches it.")
    share_qualified: FigureOut = Field(description="Share of test-window leads handed over (per lead, 0-1).")
    qualified_per_week: FigureOut = Field(
        description="Leads handed over per week: the share handed over times new leads per week."
    )
    precision: FigureOut = Field(
        description="Share of handed-over leads won within the horizon after their hand-over (per handed lead)."
    )
    recall: FigureOut = Field(
        description="Share of the test window's won leads that were handed over before they closed (per won lead)."
    )
    expected_wins_per_week: FigureOut = Field(
        description="Won leads per week among those handed over: every win of a handed lead that closed after its "
        "hand-over (the wins sales receives; recall's numerator), not only those within the horizon."
    )
    lift: FigureOut = Field(description="Precision divided by the base rate (ratio).")
    median_days_to_hand_over: FigureOut | None = Field(
        description="Median days from a lead's creation to its hand-over, over handed leads; null when none is."
    )
    leads_per_week: float = Field(description="New leads per week (the last 12 weeks of data) scaled to.")
    leads_per_week_basis: str = Field(default="", description="Where leads_per_week comes from, in words.")
    follow_up_days: int | None = Field(
        default=None,
        description="Each test lead was replayed over its first this many days (its scoring moments in that span); "
        "hand-overs later in a lead's life are not counted. 0: scored once, at creation; null: no time column.",
    )
    test_leads: int = Field(description="Leads in the test window.")
    test_wins: int = Field(description="Test-window leads won (within the horizon after some scoring moment).")
    leads_handed_over: int = Field(description="Test-window leads handed over at this cut-off.")
    wins_after_hand_over: int = Field(description="Handed-over test leads won within the horizon after hand-over.")
    wins_caught: int = Field(description="Won test leads handed over before they closed.")
    base_rate: float = Field(
        description="Share of leads won within the horizon after their first scoring moment (per lead, 0-1)."
    )
    test_moments: int = Field(description="Scoring moments (rows) replayed; several per lead.")
    horizon_days: int | None = Field(description="The horizon of 'won within the horizon', in days.")
    model_version: str


class CurveOut(BaseModel):
    model_version: str
    points: list[AnalysisOut]


class HistoryOut(BaseModel):
    policies: list[PolicyOut]


# ---- the feedback loop: outcomes, verdicts, realised results ------------------------------------
LeadId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]  # no control characters


class OutcomeIn(_Strict):
    lead_id: LeadId
    outcome: Literal["won", "lost"]
    closed_at: datetime = Field(description="When the deal closed (RFC 3339; naive means UTC).")
    amount: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(None, description="Deal value.")


class OutcomesIn(_Strict):
    outcomes: Annotated[list[OutcomeIn], Field(min_length=1, max_length=10_000)]


class OutcomesOut(BaseModel):
    received: int = Field(description="Rows in the request.")
    recorded: int = Field(description="New rows stored.")
    unchanged: int = Field(description="Rows equal to the lead's latest outcome (lead, outcome, close time, amount).")
    corrections: int = Field(description="Stored rows that change a lead's latest outcome (the latest counts).")
    unknown_leads: int = Field(description="Distinct lead ids never scored (accepted and stored all the same).")
    unknown_lead_ids: list[str] = Field(description="The first 100 of them.")
    superseded: int = Field(
        0,
        description="Rows followed in the same call by a different row of the same lead: only a lead's last row "
        "of a call counts (not stored; sending the same call again changes nothing).",
    )


RejectionReason = Literal[
    "no_budget",
    "no_authority",
    "no_need",
    "bad_timing",
    "unreachable",
    "not_a_fit",
    "duplicate",
    "spam_or_test",
    "competitor",
    "other",
]


VerdictName = Literal["accepted", "rejected", "recycled"]


class FeedbackIn(_Strict):
    lead_id: LeadId
    verdict: VerdictName = Field(
        description="accepted: sales works it; rejected: not a lead for sales; recycled: back to marketing to nurture."
    )
    reason: RejectionReason | None = Field(
        None, description="Why it was rejected or recycled (required for rejected; 'other' needs a note)."
    )
    note: Annotated[str, Field(max_length=2000)] | None = None


class FeedbackOut(BaseModel):
    id: int
    lead_id: str
    verdict: str
    reason: str | None
    note: str | None
    by: str = Field(description="The key's name.")
    owner: str = Field(description="The person whose key sent the verdict (e-mail).")
    at: datetime
    handed_over: bool = Field(description="Whether Leadscore handed this lead over (false: recorded all the same).")
    handed_over_at: datetime | None


class CohortOut(BaseModel):
    cohort: str
    status: Literal["mature", "maturing", "partly mature", "no hand-overs"]
    handed_over: int = Field(description="Leads handed over in the cohort.")
    accepted: int
    rejected: int
    recycled: int
    no_verdict: int
    rejected_by_reason: dict[str, int]
    mature: int = Field(description="Leads whose horizon after hand-over has closed.")
    won_within_horizon: int = Field(description="Mature leads won within the horizon after hand-over.")
    realised_precision: float | None = Field(description="won_within_horizon / mature (per lead).")
    realised_precision_interval: tuple[float, float] | None = Field(description="95% Wilson interval, over leads.")
    expected_precision: float | None = Field(description="Mean probability at hand-over of the mature leads.")
    maturing: int = Field(description="Leads whose horizon is still open.")
    wins_so_far: int
    expected_wins: float = Field(description="Sum of the maturing leads' probabilities at hand-over.")
    wins_caught: int = Field(description="Wins (closed in the period) of leads handed over before they closed.")
    wins_missed: int = Field(description="Wins of leads scored but not handed over before they closed.")
    median_days_to_hand_over: float | None = Field(description="Days from creation to hand-over (median).")


class CalibrationBinOut(BaseModel):
    leads: int
    mean_probability: float
    won: int
    observed_rate: float
    interval: tuple[float, float]


class PerformanceOut(BaseModel):
    start: datetime
    end: datetime
    as_of: datetime
    by: str
    horizon_days: int
    cohorts: list[CohortOut]
    total: CohortOut
    wins_not_scored: int = Field(description="Wins in the period of leads never scored before they closed.")
    calibration: list[CalibrationBinOut] = Field(
        description="First scores whose horizon has closed, in up to 10 equal groups by probability (deciles)."
    )


class FeatureDriftOut(BaseModel):
    feature: str
    psi: float
    level: Literal["stable", "warning", "drift"]


class DayVolumeOut(BaseModel):
    day: str = Field(description="YYYY-MM-DD (UTC).")
    scores: int = Field(description="Answers served that day (by this model version).")


class AllAnswersDriftOut(BaseModel):
    """Every answer of the window against every test scoring moment: for reading, not the verdict (features
    that count time, and so the score, depend on when and how often the CRM asks)."""

    status: Literal["not enough data", "stable", "warning", "drift"]
    explanation: str
    score_psi: float | None
    score_level: Literal["stable", "warning", "drift"] | None
    features: list[FeatureDriftOut] = Field(description="PSI per feature, worst first.")


class MonitoringOut(BaseModel):
    model_version: str
    days: int = Field(description="The window: the last N days (UTC), today included.")
    start_day: str
    end_day: str
    status: Literal["no reference", "not enough data", "stable", "warning", "drift"]
    explanation: str
    scores: int = Field(description="Answers counted in the window (all answers).")
    leads: int = Field(description="Distinct leads among them (per day and server process, summed over the days).")
    min_scores: int = Field(
        description="Fewer leads scored on arrival than this give no verdict (fewer answers: no all-answers figures)."
    )
    min_leads: int = Field(description="Fewer distinct leads than this give no all-answers figures.")
    levels: dict[str, float] = Field(description="PSI levels: warning from, drift from.")
    score_psi: float | None = Field(
        description="The verdict's PSI of the probabilities: leads scored on arrival (within an hour of creation, "
        "one answer per lead) against the test leads at their creation (all answers, for a model trained before "
        "on-arrival references: see on_arrival)."
    )
    score_level: Literal["stable", "warning", "drift"] | None
    features: list[FeatureDriftOut] = Field(
        description="The verdict's PSI per feature, worst first (on arrival: the lead attributes only; the touch "
        "features are under all_answers)."
    )
    arrivals: int = Field(description="Leads scored on arrival in the window (the verdict's sample).")
    on_arrival: bool = Field(description="Whether the verdict is on arrival (false: on all answers, an older model).")
    all_answers: AllAnswersDriftOut | None = Field(
        description="Every answer against every test scoring moment, for reading (depends on the CRM's schedule)."
    )
    unseen_categories: dict[str, float | None] = Field(
        description="Per categorical attribute: share of answers (with the attribute given) whose value the model "
        "never saw."
    )
    unseen_touch_share: float | None = Field(description="Share of touches whose type the model does not know.")
    reference_unseen_touch_share: float | None = Field(description="The same share in the test window.")
    volume: list[DayVolumeOut]
